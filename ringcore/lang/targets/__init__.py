"""Code generators: one module per target, each with ``emit(kir: KernelIR) -> str``.

``numpy``
    Python source defining ``run(n, inp, out, state, env)``, vectorised over a
    batch of ``n`` messages (serial kernels loop over the messages in order):

    - ``inp``: dict field -> array of the input message's fields, shape ``(n,)``
      for scalars and ``(n, size)`` (flattened, C order) for array fields;
    - ``out``: the same for the reply's fields, zero-filled by the caller, or
      None when the kernel declares no reply type; the kernel writes the lanes
      that reply;
    - ``state``: dict field -> array view into the kernel's state record: shape
      ``(1,)`` for scalars, ``(size,)`` for arrays; updated in place;
    - ``env``: the runtime's services: ``env.thread_id`` (u32 array, arange n),
      ``env.kernel_number`` (u32), ``env.send(target, type_id, lanes, fields)``
      (target: a kernel name or a u32 array with one kernel number per lane of
      ``lanes``; ``lanes``: int64 indices of the sending lanes, in increasing
      order; ``fields``: dict field -> array with one row per lane) returning a
      u32 array of DELIVERY_CODES, ``env.publish(topic, type_id, lanes, fields)``
      returning a u32 array of subscriber counts, ``env.header(name)`` returning
      a header field of every message of the batch (``ctx.header.<name>``), and
      ``env.now(lanes)`` returning ``(physical u64 array, logical u32 array)``;
      ``ringcore.lang.host.KernelEnv`` is the implementation;
    - returns ``(has_reply, status)``: a bool array (which lanes replied) and a
      u32 array (0, or the error site that failed the lane).

``cuda`` / ``opencl``
    C source (one emitter, ``c.py``) with the message and state structs, the
    handler as a device function and a batch entry point (see ``c.py``).

``wgsl``
    A WGSL module with a compute entry point over a batch (see ``wgsl.py``).
"""

from __future__ import annotations

#: Target name -> the module that emits it (imported on first use).
TARGET_MODULES = {
    "numpy": "ringcore.lang.targets.numpy",
    "cuda": "ringcore.lang.targets.cuda",
    "opencl": "ringcore.lang.targets.opencl",
    "wgsl": "ringcore.lang.targets.wgsl",
}

TARGETS = tuple(TARGET_MODULES)

"""With LLAMATP_PROBE_CARVEOUT=<percent> and this folder on PYTHONPATH, every Triton kernel a
process loads asks the driver for that share of the L1/shared-memory split as shared memory
(CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT): a probe of whether kernels of different
splits that overlap (decode attention launched while a GEMV runs) wait for one another."""

import os

if os.environ.get("LLAMATP_PROBE_CARVEOUT"):
    import ctypes

    import triton.knobs

    _CARVEOUT_ATTRIBUTE = 9  # CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT
    _percent = int(os.environ["LLAMATP_PROBE_CARVEOUT"])
    _libcuda = ctypes.CDLL("libcuda.so.1")

    def _set_carveout(module, function, name, metadata_group, hash) -> None:
        result = _libcuda.cuFuncSetAttribute(ctypes.c_void_p(function), _CARVEOUT_ATTRIBUTE, _percent)
        if result != 0:
            print(f"carveout probe: cuFuncSetAttribute({name}) returned {result}", flush=True)

    triton.knobs.runtime.kernel_load_end_hook.add(_set_carveout)

"""Test stand-in for CuPy: numpy arrays, and the devices CUDA_VISIBLE_DEVICES names (see ../README.md)."""

from __future__ import annotations

import os

import numpy as np

__version__ = "0.0.0+fake"
FAKE = True

asarray = np.asarray
asnumpy = np.asarray


class _Runtime:
    class CUDARuntimeError(RuntimeError):
        pass

    @staticmethod
    def getDeviceCount() -> int:
        ids = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        if not ids:
            raise _Runtime.CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
        return len(ids)


class cuda:  # cupy.cuda.runtime, as in CuPy
    runtime = _Runtime

"""The last step of the exact truncation with a shared mask's top bit (both protocols:
mpc.protocols.dealer.truncation and mpc.protocols.replicated.truncation)."""

from __future__ import annotations

import numpy as np
from numba import njit

from mpc.kernels.matrix import _U64, check_u64


def trunc_finish_reference(c, t, m, bits: int, first: bool) -> np.ndarray:
    """[y] = [t] - (c63 ? 2^(64-bits) [m] : 0), plus for party 0 the public part
    (c_low >> bits) + 2^(63-bits) c63 - 2^(62-bits); elementwise on flat uint64 arrays."""
    top = c >> np.uint64(63)
    y = t - top * (m << np.uint64(64 - bits))
    if first:
        low = c & np.uint64((1 << 63) - 1)
        y += (low >> np.uint64(bits)) + top * np.uint64(1 << (63 - bits)) \
            - np.uint64(1 << (62 - bits))
    return y


@njit(cache=True, nogil=True)
def _trunc_finish(c, t, m, bits, first, out):
    shift = np.uint64(bits)
    scale = np.uint64(1) << (np.uint64(63) - shift)
    offset = np.uint64(1) << (np.uint64(62) - shift)
    wrap = np.uint64(64) - shift
    low_mask = (np.uint64(1) << np.uint64(63)) - np.uint64(1)
    for i in range(out.shape[0]):
        top = c[i] >> np.uint64(63)
        y = t[i]
        if top:
            y -= m[i] << wrap
        if first:
            y += ((c[i] & low_mask) >> shift) + top * scale - offset
        out[i] = y


def trunc_finish(c: np.ndarray, t: np.ndarray, m: np.ndarray, bits: int,
                 first: bool) -> np.ndarray:
    """Fused last step of the exact truncation on flat arrays (one pass instead of ~10)."""
    check_u64(c, t, m)
    if not 1 <= bits <= 62:
        raise ValueError(f"trunc_finish: bits {bits} out of range 1..62")
    out = np.empty(c.shape, dtype=_U64)
    _trunc_finish(c, t, m, bits, first, out)
    return out

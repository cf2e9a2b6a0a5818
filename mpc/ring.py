"""The ring Z_2^64 on numpy uint64: wraparound is the modular reduction.

Everything here keeps values np.uint64 end to end; mixing uint64 with a signed integer
makes numpy (and numba) fall back to float64, which silently loses low bits.
"""

from __future__ import annotations

import numpy as np

RING_BITS = 64
DTYPE = np.dtype(np.uint64)
ZERO = np.uint64(0)
ONE = np.uint64(1)


def u64(value) -> np.ndarray:
    """Python ints (any sign, any size) or integer arrays as ring elements, mod 2^64."""
    if isinstance(value, np.ndarray):
        if value.dtype == DTYPE:
            return value
        if value.dtype.kind in "iub":
            return value.astype(np.int64).view(DTYPE) if value.dtype.kind == "i" \
                else value.astype(DTYPE)
        raise TypeError(f"ring values must be integers, got dtype {value.dtype}")
    return np.uint64(int(value) % (1 << RING_BITS))


def signed(values: np.ndarray) -> np.ndarray:
    """Two's-complement view: ring elements as int64 in [-2^63, 2^63)."""
    return np.asarray(values, dtype=DTYPE).view(np.int64)


def shift_right(values: np.ndarray, bits: int) -> np.ndarray:
    """Logical right shift of ring elements by a public amount."""
    return np.right_shift(values, np.uint64(bits))

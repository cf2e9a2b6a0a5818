"""The ring Z_2^64 on numpy uint64: wraparound is the modular reduction.

Everything here keeps values np.uint64 end to end; mixing uint64 with a signed integer
makes numpy (and numba) fall back to float64, which silently loses low bits.
"""

from __future__ import annotations

import numpy as np

DTYPE = np.dtype(np.uint64)


def signed(values: np.ndarray) -> np.ndarray:
    """Two's-complement view: ring elements as int64 in [-2^63, 2^63)."""
    return np.asarray(values, dtype=DTYPE).view(np.int64)

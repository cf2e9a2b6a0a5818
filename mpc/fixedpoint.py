"""Fixed-point encoding of reals in Z_2^64: x -> round(x * 2^f), two's complement.

The encodable range is deliberately smaller than the ring: a product of two encoded values
carries 2f fractional bits and must stay below 2^62 in magnitude for the default truncation
to be exact (see mpc.protocols.dealer.truncation). With f = 16 that allows |x * y| < 2^30 for
a product; inputs are limited to |x| < 2^(62 - 2f) = 2^30 by default so that sums and
products of small values have head-room. Encoding refuses NaN, infinities and values
outside that range instead of wrapping them silently.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from mpc.ring import DTYPE, signed

DEFAULT_FRAC_BITS = 16
PRODUCT_BITS = 62  # |x*y| * 2^(2f) must stay below 2^62 for exact truncation


@dataclass(frozen=True)
class FixedPoint:
    """A fixed-point format: `frac_bits` fractional bits inside the 64-bit ring."""

    frac_bits: int = DEFAULT_FRAC_BITS

    def __post_init__(self):
        if not 0 <= self.frac_bits <= 30:
            raise ValueError(f"frac_bits must be in [0, 30], got {self.frac_bits}")

    @property
    def scale(self) -> int:
        return 1 << self.frac_bits

    @property
    def max_abs(self) -> float:
        """Largest magnitude `encode` accepts: 2^(62 - 2f)."""
        return float(2 ** (PRODUCT_BITS - 2 * self.frac_bits))

    @property
    def ulp(self) -> float:
        return 1.0 / self.scale

    def encode(self, values) -> np.ndarray:
        """Reals -> ring elements. Integers and floats of any width are accepted, and
        booleans as 0 and 1 (as numpy's arithmetic takes them); anything else (complex,
        strings, None, objects) raises TypeError naming its type. Raises ValueError on NaN,
        inf or |x| > max_abs."""
        x = as_reals(values)
        if not np.all(np.isfinite(x)):
            raise ValueError("cannot encode NaN or infinite values")
        if x.size and np.max(np.abs(x)) > self.max_abs:
            worst = x.flat[np.argmax(np.abs(x))]
            raise ValueError(f"value {float(worst)!r} is outside the fixed-point range "
                             f"[-{self.max_abs:g}, {self.max_abs:g}] (frac_bits={self.frac_bits})")
        return np.rint(x * self.scale).astype(np.int64).view(DTYPE)

    def decode(self, ring_values: np.ndarray) -> np.ndarray:
        """Ring elements -> float64 reals."""
        return signed(ring_values).astype(np.float64) / self.scale


def as_reals(values) -> np.ndarray:
    """`values` as a float64 array, refusing what is not a real number (numpy would drop
    an imaginary part with a warning, parse numeric strings and report None as NaN)."""
    raw = values if isinstance(values, np.ndarray) else np.asarray(values)
    if raw.dtype.kind == "O":
        bad = [v for v in raw.flat if not isinstance(v, (numbers.Real, np.bool_))]
        if bad:
            raise TypeError(f"cannot encode {type(bad[0]).__name__} value {bad[0]!r} as "
                            f"fixed point: expected real numbers (ints, floats or bools)")
    elif raw.dtype.kind not in "biuf":
        raise TypeError(f"cannot encode an array of dtype {raw.dtype} as fixed point: "
                        f"expected real numbers (ints, floats or bools)")
    return raw.astype(np.float64)

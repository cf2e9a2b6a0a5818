"""The last step of the exact truncation with a shared mask's top bit (both protocols:
mpc.protocols.dealer.truncation and mpc.protocols.replicated.truncation), and the two
halves of the split opening's last step (mpc.protocols.dealer.truncation): the receiver's
packed top bits of c, and the finish from those bits alone."""

from __future__ import annotations

import numpy as np
from numba import njit

from mpc.kernels.matrix import _U64, check_u64


def trunc_finish_reference(c, t, m, bits: int, first: bool) -> np.ndarray:
    """[y] = [t] - (c63 ? 2^(64-bits) [m] : 0), plus for party 0 the public part
    (c_low >> bits) + 2^(63-bits) c63 - 2^(62-bits); elementwise on flat uint64 arrays
    (m may be narrower: it is needed modulo 2^bits)."""
    m = np.asarray(m).astype(_U64)
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
    for i in range(out.shape[0]):  # branch-free: the top bits are random
        top = c[i] >> np.uint64(63)
        y = t[i] - (np.uint64(m[i]) << wrap) * top
        if first:
            y += ((c[i] & low_mask) >> shift) + top * scale - offset
        out[i] = y


def _check_bits(bits: int, m: np.ndarray) -> None:
    """bits in range, and m (the top bit's shares modulo 2^bits) unsigned and wide enough:
    uint64, or the narrow dtype the dealer delivers it in (mpc.protocols.dealer
    .correlations)."""
    if not 1 <= bits <= 62:
        raise ValueError(f"trunc_finish: bits {bits} out of range 1..62")
    if not isinstance(m, np.ndarray) or m.dtype.kind != "u" or 8 * m.dtype.itemsize < bits:
        raise TypeError(f"trunc_finish: m must be an unsigned array of at least {bits} bits")


def _output(out, size: int) -> np.ndarray:
    if out is None:
        return np.empty(size, dtype=_U64)
    if out.dtype != _U64 or out.shape != (size,):
        raise ValueError(f"trunc_finish: out must be uint64 of shape ({size},)")
    return out


def trunc_finish(c: np.ndarray, t: np.ndarray, m: np.ndarray, bits: int,
                 first: bool, out: np.ndarray | None = None) -> np.ndarray:
    """Fused last step of the exact truncation on flat arrays (one pass instead of ~10);
    written into `out` (a flat uint64 array, may be a slice) when given."""
    check_u64(c, t)
    _check_bits(bits, m)
    out = _output(out, c.size)
    _trunc_finish(c, t, m, bits, first, out)
    return out


def top_bits_packed_reference(c: np.ndarray) -> np.ndarray:
    """Bit 63 of each element of flat uint64 `c`, 8 per byte, first element in the MSB
    (np.packbits order)."""
    return np.packbits((c >> np.uint64(63)).astype(np.uint8))


@njit(cache=True, nogil=True)
def _top_bits_packed(c, out):
    n, top = c.shape[0], np.uint64(63)
    full = n // 8
    for j in range(full):
        i = 8 * j
        out[j] = np.uint8((c[i] >> top) << np.uint64(7) | (c[i + 1] >> top) << np.uint64(6)
                          | (c[i + 2] >> top) << np.uint64(5) | (c[i + 3] >> top) << np.uint64(4)
                          | (c[i + 4] >> top) << np.uint64(3) | (c[i + 5] >> top) << np.uint64(2)
                          | (c[i + 6] >> top) << np.uint64(1) | (c[i + 7] >> top))
    if full < out.shape[0]:
        byte = np.uint64(0)
        for i in range(8 * full, n):
            byte |= (c[i] >> top) << np.uint64(7 - (i - 8 * full))
        out[full] = np.uint8(byte)


def top_bits_packed(c: np.ndarray) -> np.ndarray:
    """Fused top_bits_packed_reference: ceil(size / 8) bytes."""
    check_u64(c)
    out = np.empty((c.size + 7) // 8, dtype=np.uint8)
    _top_bits_packed(c.reshape(-1), out)
    return out


def trunc_finish_bits_reference(packed, t, m, bits: int) -> np.ndarray:
    """trunc_finish for a party that is not party 0, from c's packed top bits alone:
    [y] = [t] - c63 2^(64-bits) [m]."""
    top = np.unpackbits(packed, count=t.size).astype(_U64)
    m = np.asarray(m).astype(_U64)
    return t - top * (m << np.uint64(64 - bits))


@njit(cache=True, nogil=True)
def _trunc_finish_bits(packed, t, m, bits, out):
    wrap = np.uint64(64) - np.uint64(bits)
    for i in range(out.shape[0]):  # branch-free: the bits are random
        bit = np.uint64((packed[i >> 3] >> (7 - (i & 7))) & 1)
        out[i] = t[i] - (np.uint64(m[i]) << wrap) * bit


def trunc_finish_bits(packed: np.ndarray, t: np.ndarray, m: np.ndarray, bits: int,
                      out: np.ndarray | None = None) -> np.ndarray:
    """Fused trunc_finish_bits_reference; written into `out` when given."""
    check_u64(t)
    _check_bits(bits, m)
    if packed.dtype != np.uint8 or packed.size != (t.size + 7) // 8:
        raise ValueError(f"trunc_finish_bits: {packed.size} packed bytes ({packed.dtype}) "
                         f"for {t.size} elements")
    out = _output(out, t.size)
    _trunc_finish_bits(packed, t, m, bits, out)
    return out

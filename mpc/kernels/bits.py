"""Bit packing for boolean shares on the wire, and bit compaction (even bits of a word)."""

from __future__ import annotations

import numpy as np
from numba import njit

from mpc.kernels.matrix import _U64, check_u64

def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Flattened 0/1 (bool or uint8) values -> uint8 bytes, 8 per byte, first bit in the MSB."""
    bits = np.asarray(bits)
    if bits.dtype != np.bool_ and bits.dtype != np.uint8:
        raise TypeError(f"pack_bits takes bool or uint8, got dtype {bits.dtype}")
    return np.packbits(bits.reshape(-1).astype(np.bool_, copy=False))


def unpack_bits(packed: np.ndarray, n: int) -> np.ndarray:
    """Inverse of pack_bits: the first n bits as a uint8 0/1 array."""
    packed = np.asarray(packed, dtype=np.uint8)
    if not 0 <= n <= 8 * packed.size:
        raise ValueError(f"unpack_bits: {n} bits asked from {packed.size} bytes")
    return np.unpackbits(packed.reshape(-1), count=n)


def compact_even_reference(x: np.ndarray) -> np.ndarray:
    """Bits 0, 2, 4, ... of each word, packed into the low half (bit 2i -> bit i)."""
    out = np.zeros_like(x)
    for i in range(32):
        out |= ((x >> np.uint64(2 * i)) & np.uint64(1)) << np.uint64(i)
    return out


@njit(cache=True, nogil=True, inline="always")
def _compact_even(v):
    v &= np.uint64(0x5555555555555555)
    v = (v | (v >> np.uint64(1))) & np.uint64(0x3333333333333333)
    v = (v | (v >> np.uint64(2))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    v = (v | (v >> np.uint64(4))) & np.uint64(0x00FF00FF00FF00FF)
    v = (v | (v >> np.uint64(8))) & np.uint64(0x0000FFFF0000FFFF)
    return (v | (v >> np.uint64(16))) & np.uint64(0x00000000FFFFFFFF)


@njit(cache=True, nogil=True)
def _compact_even_all(x, out):
    for i in range(x.shape[0]):
        out[i] = _compact_even(x[i])


def compact_even(x: np.ndarray) -> np.ndarray:
    check_u64(x)
    out = np.empty_like(x)
    _compact_even_all(x.reshape(-1), out.reshape(-1))
    return out



def pack_narrow(values: np.ndarray, width: int) -> np.ndarray:
    """Values of `width` bits (1, 2 or 4) packed 8/width to a byte, for the wire."""
    per = 8 // width
    v = values.astype(np.uint8).reshape(-1)
    v = np.concatenate([v, np.zeros((-v.size) % per, np.uint8)]).reshape(-1, per)
    out = np.zeros(v.shape[0], np.uint8)
    for j in range(per):
        out |= v[:, j] << np.uint8(j * width)
    return out


def unpack_narrow(packed: np.ndarray, width: int, count: int) -> np.ndarray:
    """Inverse of pack_narrow: the first `count` values, as uint64."""
    per, mask = 8 // width, np.uint8((1 << width) - 1)
    parts = [(packed >> np.uint8(j * width)) & mask for j in range(per)]
    return np.stack(parts, axis=1).reshape(-1)[:count].astype(_U64)


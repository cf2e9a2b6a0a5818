"""Compiled loops of the replicated protocol's truncation: w-bit values on the wire.

A value of w bits travels as w // 8 whole bytes (little-endian) and its w mod 8 remaining
bits, those of all the values packed together after the whole bytes (value i's remaining
bits at bit positions i (w mod 8) ... of that tail, least significant first).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_U64 = np.uint64


def packed_size(n: int, width: int) -> int:
    """Bytes of n values of `width` bits on the wire."""
    return n * (width // 8) + (n * (width % 8) + 7) // 8


@njit(cache=True, nogil=True)
def _pack(values, whole, rest, out):
    n = values.shape[0]
    tail = n * whole
    for i in range(n):
        v = values[i]
        for j in range(whole):
            out[i * whole + j] = np.uint8((v >> np.uint64(8 * j)) & np.uint64(255))
        if rest:
            bits = (v >> np.uint64(8 * whole)) & np.uint64((1 << rest) - 1)
            pos = i * rest
            byte, shift = tail + pos // 8, pos % 8
            out[byte] |= np.uint8((bits << np.uint64(shift)) & np.uint64(255))
            if shift + rest > 8:
                out[byte + 1] |= np.uint8(bits >> np.uint64(8 - shift))


@njit(cache=True, nogil=True)
def _unpack(data, whole, rest, out):
    n = out.shape[0]
    tail = n * whole
    for i in range(n):
        v = np.uint64(0)
        for j in range(whole):
            v |= np.uint64(data[i * whole + j]) << np.uint64(8 * j)
        if rest:
            pos = i * rest
            byte, shift = tail + pos // 8, pos % 8
            bits = np.uint64(data[byte]) >> np.uint64(shift)
            if shift + rest > 8:
                bits |= np.uint64(data[byte + 1]) << np.uint64(8 - shift)
            v |= (bits & np.uint64((1 << rest) - 1)) << np.uint64(8 * whole)
        out[i] = v


def pack(values: np.ndarray, width: int) -> np.ndarray:
    """uint64 values < 2^width (1 <= width <= 64) -> packed_size(n, width) uint8 bytes."""
    values = np.ascontiguousarray(values, dtype=_U64).reshape(-1)
    out = np.zeros(packed_size(values.size, width), np.uint8)
    _pack(values, width // 8, width % 8, out)
    return out


def unpack(data: np.ndarray, n: int, width: int) -> np.ndarray:
    """Inverse of pack: n uint64 values from packed_size(n, width) bytes."""
    data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    if data.size != packed_size(n, width):
        raise ValueError(f"{data.size} bytes for {n} values of {width} bits: expected "
                         f"{packed_size(n, width)}")
    out = np.empty(n, _U64)
    _unpack(data, width // 8, width % 8, out)
    return out


@njit(cache=True, nogil=True)
def helper_product(ra, rb, ka, ma, sa, sb, part, rho, f, w, w_h, k_b, m_b, comps):
    """The helper's round of a fused truncation (mpc.protocols.replicated.truncation):
    w_h, the corrections k_b, m_b and its components (Y_h, Y_a), in one pass."""
    fmask, wmask = (_U64(1) << _U64(f)) - _U64(1), (_U64(1) << _U64(w)) - _U64(1)
    top, uf, q_shift = _U64(64 - w), _U64(f), _U64(63 - f)
    for i in range(ra.shape[0]):
        a_a, a_b = ra[i] >> uf, rb[i] >> uf
        q = (a_a + a_b) >> q_shift
        m = q & _U64(1)
        w_h[i] = part[i] + (rho[i] & fmask)
        k_b[i] = (m + q - ka[i]) & wmask
        m_b[i] = (m - ma[i]) & fmask
        comps[0, i] = _U64(0) - a_b + ((sb[i] & wmask) << top)
        comps[1, i] = _U64(0) - a_a + ((sa[i] & wmask) << top)


@njit(cache=True, nogil=True)
def helper_alone(ra, rb, ta, ma, sa, sb, f, t_b, m_b, comps):
    """The helper's round of a truncation alone: T_b, m_b and (Y_h, Y_a) (w = f)."""
    fmask = (_U64(1) << _U64(f)) - _U64(1)
    top, uf, scale = _U64(64 - f), _U64(f), _U64(1) << _U64(63 - f)
    low63 = (_U64(1) << _U64(63)) - _U64(1)
    for i in range(ra.shape[0]):
        r = ra[i] + rb[i]
        m = r >> _U64(63)
        t_b[i] = m * scale - ((r & low63) >> uf) - ta[i]
        m_b[i] = (m - ma[i]) & fmask
        comps[0, i] = t_b[i] + ((sb[i] & fmask) << top)
        comps[1, i] = ta[i] + ((sa[i] & fmask) << top)


@njit(cache=True, nogil=True)
def open_and_top(w_mine, w_peer, w_h, k, m, s, f, w, c, e):
    """c = w_mine + w_peer (+ w_h, if it has any elements) and this party's reshare piece
    e = k - 2^(w-f) c63 m - s mod 2^w (k, m, s already reduced; k of size 0: zero)."""
    wmask = (_U64(1) << _U64(w)) - _U64(1)
    scale = _U64(1) << _U64(w - f)
    with_h, with_k = w_h.shape[0] > 0, k.shape[0] > 0
    for i in range(c.shape[0]):
        ci = w_mine[i] + w_peer[i]
        if with_h:
            ci += w_h[i]
        c[i] = ci
        ki = k[i] if with_k else _U64(0)
        e[i] = (ki - (ci >> _U64(63)) * m[i] * scale - s[i]) & wmask


@njit(cache=True, nogil=True)
def shared_component(c, e, e_other, f, w, out):
    """Y_b = pub(c) + 2^(64-w) (e + e_other), pub(c) = (c >> f) - 2^(62-f)."""
    top, uf, half = _U64(64 - w), _U64(f), _U64(1) << _U64(62 - f)
    for i in range(c.shape[0]):
        out[i] = (c[i] >> uf) - half + ((e[i] + e_other[i]) << top)

"""Compiled loops of the replicated protocol's truncation: w-bit values on the wire.

A value of w bits travels as w // 8 whole bytes (little-endian) and its w mod 8 remaining
bits, those of all the values packed together after the whole bytes (value i's remaining
bits at bit positions i (w mod 8) ... of that tail, least significant first). Ring words
are little-endian in memory (x86-64, aarch64), as everywhere in this package.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_U64 = np.uint64


def packed_size(n: int, width: int) -> int:
    """Bytes of n values of `width` bits on the wire."""
    return n * (width // 8) + (n * (width % 8) + 7) // 8


_WORD_TYPES = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}


def _whole_bytes(packed: np.ndarray, n: int, whole: int) -> np.ndarray:
    """The whole-byte part of n packed values as an (n, whole) uint8 array, or as a 1-D array
    of little-endian words where `whole` is a word's size (casts, not per-byte loops)."""
    body = packed[:n * whole]
    if whole in _WORD_TYPES:
        return body.view(_WORD_TYPES[whole])
    return body.reshape(n, whole)


@njit(cache=True, nogil=True)
def _pack_tail(values, shift, rest, out):
    """Bits shift .. shift + rest - 1 of each value, value i's at bit positions
    i rest .. of `out`, least significant first (rest < 8): eight values make `rest`
    whole bytes, so groups of eight go without a carried state."""
    mask, n = (_U64(1) << _U64(rest)) - _U64(1), values.shape[0]
    groups = n // 8
    for g in range(groups):
        acc = _U64(0)
        for j in range(8):
            acc |= ((values[8 * g + j] >> _U64(shift)) & mask) << _U64(j * rest)
        for k in range(rest):
            out[g * rest + k] = np.uint8((acc >> _U64(8 * k)) & _U64(255))
    acc, held, pos = _U64(0), 0, groups * rest
    for i in range(8 * groups, n):
        acc |= ((values[i] >> _U64(shift)) & mask) << _U64(held)
        held += rest
    for k in range((held + 7) // 8):
        out[pos + k] = np.uint8((acc >> _U64(8 * k)) & _U64(255))


@njit(cache=True, nogil=True)
def _unpack_tail(data, shift, rest, out):
    """Inverse of _pack_tail, OR-ing the bits into `out` at `shift`."""
    mask, n = (_U64(1) << _U64(rest)) - _U64(1), out.shape[0]
    groups = n // 8
    for g in range(groups + (1 if n % 8 else 0)):
        acc = _U64(0)
        for k in range(min(rest, data.shape[0] - g * rest)):
            acc |= _U64(data[g * rest + k]) << _U64(8 * k)
        for j in range(min(8, n - 8 * g)):
            out[8 * g + j] |= ((acc >> _U64(j * rest)) & mask) << _U64(shift)


def pack(values: np.ndarray, width: int) -> np.ndarray:
    """uint64 values < 2^width (1 <= width <= 64) -> packed_size(n, width) uint8 bytes."""
    values = np.ascontiguousarray(values, dtype=_U64).reshape(-1)
    n, whole, rest = values.size, width // 8, width % 8
    out = np.empty(packed_size(n, width), np.uint8)
    if whole:
        body = _whole_bytes(out, n, whole)
        if body.ndim == 1:
            body[:] = values  # the low `whole` bytes (a truncating cast)
        else:
            body[:] = values.view(np.uint8).reshape(n, 8)[:, :whole]
    if rest:
        _pack_tail(values, 8 * whole, rest, out[n * whole:])
    return out


def unpack(data: np.ndarray, n: int, width: int) -> np.ndarray:
    """Inverse of pack: n uint64 values from packed_size(n, width) bytes."""
    data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    if data.size != packed_size(n, width):
        raise ValueError(f"{data.size} bytes for {n} values of {width} bits: expected "
                         f"{packed_size(n, width)}")
    whole, rest = width // 8, width % 8
    if not whole:
        out = np.zeros(n, _U64)
    elif whole in _WORD_TYPES:
        out = _whole_bytes(data, n, whole).astype(_U64)
    else:
        out = np.zeros(n, _U64)
        out.view(np.uint8).reshape(n, 8)[:, :whole] = _whole_bytes(data, n, whole)
    if rest:
        _unpack_tail(data[n * whole:], 8 * whole, rest, out)
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

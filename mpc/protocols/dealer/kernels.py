"""The dealer protocol's fused kernels: Beaver recombination and the comparison tree's AND
levels, each with a plain-numpy reference."""

from __future__ import annotations

import numpy as np
from numba import njit

from mpc.kernels import matmul
from mpc.kernels.bits import _compact_even, compact_even_reference
from mpc.kernels.matrix import _U64, check_u64

def trunc_pair_reference(r: np.ndarray, bits: int):
    """The truncation pair of mask r: t = 2^(63-bits) m - ((r mod 2^63) >> bits) and
    m = r >> 63 (mpc.protocols.dealer.truncation)."""
    m = r >> np.uint64(63)
    return m * np.uint64(1 << (63 - bits)) - ((r & np.uint64((1 << 63) - 1)) >> np.uint64(bits)), m


@njit(cache=True, nogil=True)
def _trunc_pair(r, bits, t, m):
    shift = np.uint64(bits)
    scale = np.uint64(1) << (np.uint64(63) - shift)
    low_mask = (np.uint64(1) << np.uint64(63)) - np.uint64(1)
    for i in range(r.shape[0]):
        top = r[i] >> np.uint64(63)
        m[i] = top
        t[i] = top * scale - ((r[i] & low_mask) >> shift)


def trunc_pair(r: np.ndarray, bits: int):
    """Fused trunc_pair_reference: (t, m) of r's shape in one pass."""
    check_u64(r)
    flat = np.ascontiguousarray(r).reshape(-1)
    t, m = np.empty_like(flat), np.empty_like(flat)
    _trunc_pair(flat, bits, t, m)
    return t.reshape(r.shape), m.reshape(r.shape)


OFFSET = np.uint64(1 << 62)  # the exact truncation's input offset (truncation.OFFSET_BITS)


def trunc_pair_product_reference(q: np.ndarray, c: np.ndarray, bits: int):
    """The truncation pair of the fused truncated product's mask r = q - c - 2^62
    (mpc.protocols.dealer.truncation.truncated_product): trunc_pair_reference(r)."""
    return trunc_pair_reference(q - c - OFFSET, bits)


@njit(cache=True, nogil=True)
def _trunc_pair_product(q, c, bits, t, m):
    shift = np.uint64(bits)
    scale = np.uint64(1) << (np.uint64(63) - shift)
    low_mask = (np.uint64(1) << np.uint64(63)) - np.uint64(1)
    offset = np.uint64(1) << np.uint64(62)
    for i in range(q.shape[0]):
        r = q[i] - c[i] - offset
        top = r >> np.uint64(63)
        m[i] = top
        t[i] = top * scale - ((r & low_mask) >> shift)


@njit(cache=True, nogil=True)
def _trunc_pair_mul(q, a, b, bits, t, m):
    """_trunc_pair_product with c = a * b elementwise, c never stored."""
    shift = np.uint64(bits)
    scale = np.uint64(1) << (np.uint64(63) - shift)
    low_mask = (np.uint64(1) << np.uint64(63)) - np.uint64(1)
    offset = np.uint64(1) << np.uint64(62)
    for i in range(q.shape[0]):
        r = q[i] - a[i] * b[i] - offset
        top = r >> np.uint64(63)
        m[i] = top
        t[i] = top * scale - ((r & low_mask) >> shift)


def trunc_pair_product(q: np.ndarray, c: np.ndarray, bits: int, b: np.ndarray | None = None):
    """Fused trunc_pair_product_reference: flat (t, m) in one pass. With `b`, c is the
    first factor and the product is c * b elementwise (same shapes), computed in the pass."""
    check_u64(q, c)
    flat_q = np.ascontiguousarray(q).reshape(-1)
    t, m = np.empty_like(flat_q), np.empty_like(flat_q)
    if b is None:
        _trunc_pair_product(flat_q, np.ascontiguousarray(c).reshape(-1), bits, t, m)
    else:
        check_u64(b)
        _trunc_pair_mul(flat_q, np.ascontiguousarray(c).reshape(-1),
                        np.ascontiguousarray(b).reshape(-1), bits, t, m)
    return t, m


@njit(cache=True, nogil=True)
def _trunc_corrections(q0, q1, a0, a1, b0, b1, c, mode, bits, t_other, m_other, t_out, m_out):
    """The corrections t - t_other and (m - m_other) mod 2^bits of the truncation pair of
    r = q0 + q1 (mode 0), q0 + q1 - c - 2^62 (mode 1) or
    q0 + q1 - (a0 + a1) (b0 + b1) - 2^62 (mode 2)."""
    shift = np.uint64(bits)
    scale = np.uint64(1) << (np.uint64(63) - shift)
    low_mask = (np.uint64(1) << np.uint64(63)) - np.uint64(1)
    m_mask = (np.uint64(1) << shift) - np.uint64(1)
    offset = np.uint64(1) << np.uint64(62)
    for i in range(q0.shape[0]):
        r = q0[i] + q1[i]
        if mode == 1:
            r -= c[i] + offset
        elif mode == 2:
            r -= (a0[i] + a1[i]) * (b0[i] + b1[i]) + offset
        top = r >> np.uint64(63)
        t_out[i] = top * scale - ((r & low_mask) >> shift) - t_other[i]
        m_out[i] = (top - np.uint64(m_other[i])) & m_mask


def trunc_corrections(q: tuple, bits: int, t_other: np.ndarray, m_other: np.ndarray,
                      t_out: np.ndarray, m_out: np.ndarray, c: np.ndarray | None = None,
                      a: tuple | None = None, b: tuple | None = None) -> None:
    """The dealer's corrections for a truncation pair, in one pass, written into t_out
    (uint64) and m_out (an unsigned dtype of at least `bits` bits; m_other likewise), for
    the mask r = q (trunc_pair), r = q - c - 2^62 (trunc_pair_product), or with `a` and
    `b`, r = q - a * b - 2^62 elementwise (same shapes). q, a and b come as pairs of
    shares (q = q[0] + q[1]: the dealer sums the parties' streams in the same pass)."""
    def flat(v):
        return np.ascontiguousarray(v).reshape(-1)
    q0, q1 = (flat(v) for v in q)
    t_flat, m_flat, t_o, m_o = t_out.reshape(-1), m_out.reshape(-1), flat(t_other), \
        flat(m_other)
    mode = 0 if c is None and a is None else 1 if a is None else 2
    a0, a1 = (flat(v) for v in a) if a is not None else (q0, q0)
    b0, b1 = (flat(v) for v in b) if b is not None else (q0, q0)
    cs = flat(c) if c is not None else q0
    check_u64(q0, q1, a0, a1, b0, b1, cs, t_o, t_flat)
    size = q0.size
    if any(v.size != size for v in (q1, a0, a1, b0, b1, cs, t_o, t_flat, m_o, m_flat)) or \
            m_flat.dtype != m_o.dtype or m_flat.dtype.kind != "u" or \
            8 * m_flat.dtype.itemsize < bits or not t_out.flags.c_contiguous or \
            not m_out.flags.c_contiguous:  # (then the flat outputs are views)
        raise ValueError("trunc_corrections: operands do not fit")
    _trunc_corrections(q0, q1, a0, a1, b0, b1, cs, mode, bits, t_o, m_o, t_flat, m_flat)


def beaver_combine_reference(d, e, a, b, c, add_de: bool) -> np.ndarray:
    """c + d*b + e*a (+ d*e) elementwise mod 2^64, with numpy broadcasting."""
    with np.errstate(over="ignore"):  # 0-d operands compute on numpy scalars, which warn
        out = c + d * b + e * a
        return out + d * e if add_de else out


@njit(cache=True, nogil=True)
def _beaver_flat(d, e, a, b, c, add_de, out):
    """Fused same-shape combine; with add_de uses d*b + e*(a + d) to save a multiply."""
    if add_de:
        for i in range(out.shape[0]):
            out[i] = c[i] + d[i] * b[i] + e[i] * (a[i] + d[i])
    else:
        for i in range(out.shape[0]):
            out[i] = c[i] + d[i] * b[i] + e[i] * a[i]


def beaver_combine(d: np.ndarray, e: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray,
                   add_de: bool, in_place: bool = False) -> np.ndarray:
    """[x*y] = c + d*b + e*a (+ d*e for one party) mod 2^64 from an opened Beaver triple.

    Same-shape operands take one fused pass; broadcasting shapes fall back to numpy.
    `in_place`: c is the caller's own fresh array, and the result may overwrite it."""
    d, e, a, b, c = (np.asarray(v) for v in (d, e, a, b, c))
    check_u64(d, e, a, b, c)
    if not d.shape == e.shape == a.shape == b.shape == c.shape:
        # Some operand has >= 1 dimension, so lifting 0-d ones to (1,) keeps the result shape
        # and keeps numpy on arrays (scalar uint64 arithmetic warns on wraparound).
        d, e, a, b, c = np.atleast_1d(d, e, a, b, c)
        out = np.multiply(d, b)
        out += e * (a + d) if add_de else e * a
        out += c
        return out
    flat = [np.ascontiguousarray(v).reshape(-1) for v in (d, e, a, b, c)]
    out = flat[4] if in_place and _writeable_view(flat[4], c) else np.empty(c.size, dtype=_U64)
    _beaver_flat(*flat, bool(add_de), out)  # elementwise: out may be c
    return out.reshape(c.shape)


@njit(cache=True, nogil=True)
def _beaver_opening(d_mine, d_others, e_mine, e_others, a, b, c, add_de, out):
    for i in range(out.shape[0]):
        d, e = d_mine[i] + d_others[i], e_mine[i] + e_others[i]
        out[i] = c[i] + d * b[i] + e * (a[i] + d if add_de else a[i])


def beaver_combine_opening(d_mine, d_others, e_mine, e_others, a, b, c, add_de: bool
                           ) -> np.ndarray:
    """beaver_combine with d = d_mine + d_others and e likewise (this party's masked shares
    and the sum of the others': an opening's two halves), same shapes, summed inside the
    pass so the opened d and e are never stored. c is the caller's own fresh array: the
    result overwrites it where it is writable."""
    arrays = (d_mine, d_others, e_mine, e_others, a, b, c)
    check_u64(*arrays)
    if any(v.shape != c.shape for v in arrays):
        raise ValueError("beaver_combine_opening: operands of different shapes")
    flat = [np.ascontiguousarray(v).reshape(-1) for v in arrays]
    out = flat[6] if _writeable_view(flat[6], c) else np.empty(c.size, dtype=_U64)
    _beaver_opening(*flat, bool(add_de), out)  # elementwise: out may be c
    return out.reshape(c.shape)


def _writeable_view(flat: np.ndarray, original: np.ndarray) -> bool:
    return flat.flags.writeable and (flat.size == 0 or np.shares_memory(flat, original))


def beaver_combine_matmul_reference(d, e, a, b, c, add_de: bool) -> np.ndarray:
    """c + d@b + a@e (+ d@e) mod 2^64 with np.matmul."""
    out = c + np.matmul(d, b) + np.matmul(a, e)
    return out + np.matmul(d, e) if add_de else out


def beaver_combine_matmul(d: np.ndarray, e: np.ndarray, a: np.ndarray, b: np.ndarray,
                          c: np.ndarray, add_de: bool, in_place: bool = False) -> np.ndarray:
    """[x@y] = c + d@b + a@e (+ d@e) mod 2^64, as c + d@b + (a + d)@e: two matmuls, not three.
    `in_place`: c is the caller's own fresh array, and the result may overwrite it."""
    d, e, a, b, c = (np.asarray(v) for v in (d, e, a, b, c))
    check_u64(d, e, a, b, c)
    if in_place and c.flags.writeable:
        out = c
        out += matmul(d, b)  # c has the full (broadcast) result shape
    else:
        out = c + matmul(d, b)
    out += matmul(a + d if add_de else a, e)
    return out


def lt_level_prepare_reference(lt, eq, half: int):
    """Inputs of one tree level's AND: X = (O(eq), O(eq)), Y = (E(lt), E(eq)) as the low and
    high `half` bits, where E/O take the even/odd bits; also O(lt), the merged lt's other
    term. Reference for lt_level_masked and lt_level_finish."""
    odd_lt = compact_even_reference(lt >> np.uint64(1))
    odd_eq = compact_even_reference(eq >> np.uint64(1))
    h = np.uint64(half)
    x = odd_eq | (odd_eq << h)
    y = compact_even_reference(lt) | (compact_even_reference(eq) << h)
    return x, y, odd_lt


def and_combine_reference(d, e, a, b, c, first: bool) -> np.ndarray:
    """[x AND y] = c ^ (d & b) ^ (e & a) (^ d & e for one party) from an opened binary
    triple (d = x ^ a, e = y ^ b). Reference for lt_level_finish."""
    z = c ^ (d & b) ^ (e & a)
    if first:
        z ^= d & e
    return z


@njit(cache=True, nogil=True)
def _lt_masked(lt, eq, half, a_word, b_word, offset, width, out):
    h, one, off = np.uint64(half), np.uint64(1), np.uint64(offset)
    mask = np.uint64(0xFFFFFFFFFFFFFFFF) if width == 64 else (one << np.uint64(width)) - one
    n = lt.shape[0]
    for i in range(n):
        odd_eq = _compact_even(eq[i] >> one)
        x = odd_eq | (odd_eq << h)
        y = _compact_even(lt[i]) | (_compact_even(eq[i]) << h)
        out[i] = x ^ ((a_word[i] >> off) & mask)
        out[n + i] = y ^ ((b_word[i] >> off) & mask)


def lt_level_masked(lt: np.ndarray, eq: np.ndarray, half: int, a_word: np.ndarray,
                    b_word: np.ndarray, offset: int, width: int, dtype) -> np.ndarray:
    """One tree level's masked AND inputs, [X ^ a | Y ^ b] (lt_level_prepare_reference), with the
    triple's `width`-bit fields read at `offset` from a and b words; written straight in
    the wire dtype."""
    out = np.empty(2 * lt.size, dtype=dtype)
    _lt_masked(lt, eq, half, a_word, b_word, offset, width, out)
    return out


@njit(cache=True, nogil=True)
def _lt_finish(d, e, a_word, b_word, c_word, offset, width, first, lt, half, new_lt, new_eq):
    one, off, h = np.uint64(1), np.uint64(offset), np.uint64(half)
    mask = np.uint64(0xFFFFFFFFFFFFFFFF) if width == 64 else (one << np.uint64(width)) - one
    low = (one << h) - one
    for i in range(lt.shape[0]):
        a = (a_word[i] >> off) & mask
        b = (b_word[i] >> off) & mask
        dd, ee = np.uint64(d[i]), np.uint64(e[i])
        z = ((c_word[i] >> off) & mask) ^ (dd & b) ^ (ee & a)
        if first:
            z ^= dd & ee
        new_lt[i] = _compact_even(lt[i] >> one) ^ (z & low)
        new_eq[i] = z >> h


def lt_level_finish(d, e, a_word, b_word, c_word, offset: int, width: int, first: bool,
                    lt: np.ndarray, half: int):
    """From the opened d, e: z = [X AND Y] by the binary triple, then the merged
    (lt, eq) = (O(lt) ^ low half of z, high half of z)."""
    new_lt, new_eq = np.empty_like(lt), np.empty_like(lt)
    _lt_finish(d, e, a_word, b_word, c_word, offset, width, first, lt, half, new_lt, new_eq)
    return new_lt, new_eq

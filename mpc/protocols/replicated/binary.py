"""Binary shares for the replicated protocol: bit-sliced words and one-round ANDs.

Bits of m elements are bit-sliced: a row of W = ceil(m / 64) uint64 words holds element
64 w + k's bit in bit k of word w, so one uint64 operation is 64 gates and a row travels as
m bits (rounded up to a word). A stack of rows, shape (r, W), is r bits per element.

Bits XOR-shared by two parties, x = x_a ^ x_b, while the third party (the helper) deals
them AND triples from the seeds it shares with each: `and_open` and `and_finish` compute
the ANDs of one level in one round. XOR is local.

Comparison leaves by one-hot groups: a 63-bit value cut into 16 groups of 4 bits is held
as one-hot vectors (bit v of a uint16 for group value v); against public groups t and w,
[v ^ w > t] and [v ^ w == t] are XORs of one-hot bits, so XOR shares of the one-hot
vectors give XOR shares of both, locally.

Bit injection: from a public bit e and additive shares of a bit beta, e ^ beta is
e + (1 - 2e) beta, and x (e ^ beta) = e x + (1 - 2e) x beta, local given shares of x beta.
The numba kernels have plain-numpy references.
"""

from __future__ import annotations

import numpy as np
from numba import njit

WORD_BITS = 64
GROUPS = 16  # 4-bit groups of a 63-bit value (the top group has 3 bits)
_ONE16 = np.uint16(1)
_NIBBLE = np.uint64(15)
_ABOVE = np.uint32(0xFFFE)


def words(m: int) -> int:
    """Words per bit-sliced row of m elements."""
    return -(-int(m) // WORD_BITS)


def pack(bits: np.ndarray) -> np.ndarray:
    """(r, m) array of 0/1 -> (r, W) bit-sliced uint64 rows (padding bits are 0)."""
    bits = np.asarray(bits, dtype=np.uint8)
    rows, m = bits.shape
    out = np.zeros((rows, words(m) * 8), dtype=np.uint8)
    out[:, :-(-m // 8)] = np.packbits(bits, axis=1, bitorder="little")
    return out.view(np.uint64)


def unpack(rows: np.ndarray, m: int) -> np.ndarray:
    """(r, W) bit-sliced uint64 rows -> (r, m) uint8 of 0/1."""
    rows = np.ascontiguousarray(rows, dtype=np.uint64)
    raw = rows.view(np.uint8).reshape(rows.shape[0], -1)
    return np.unpackbits(raw, axis=1, count=m, bitorder="little")


def parity16(x: np.ndarray) -> np.ndarray:
    """XOR of the 16 bits of each uint16, as 0/1 uint16."""
    x = x ^ (x >> np.uint16(8))
    x ^= x >> np.uint16(4)
    x ^= x >> np.uint16(2)
    x ^= x >> _ONE16
    return x & _ONE16


def deal_and(a_a: np.ndarray, a_b: np.ndarray, b_a: np.ndarray, b_b: np.ndarray,
             c_a: np.ndarray) -> np.ndarray:
    """The helper's correction for the second party's triple share: with A = a_a ^ a_b,
    B = b_a ^ b_b and the first party's c_a, return c_b so that c_a ^ c_b = A & B."""
    return ((a_a ^ a_b) & (b_a ^ b_b)) ^ c_a


def and_open(x: np.ndarray, ys: list[np.ndarray], a: np.ndarray,
             bs: list[np.ndarray]) -> np.ndarray:
    """This party's shares of d = x ^ A and e_j = y_j ^ B_j, stacked, to send to the
    other party (step 1 of and_finish)."""
    return np.concatenate([x ^ a] + [y ^ b for y, b in zip(ys, bs)])


def and_finish(opened: np.ndarray, first: bool, a: np.ndarray, bs: list[np.ndarray],
               cs: list[np.ndarray]) -> list[np.ndarray]:
    """[x & y_j] for each j, XOR-shared by two parties, from the opened d and e_j.

    Beaver's method on bits with one left operand shared by every product: with triples
    (A, B_j, C_j = A & B_j) dealt by the helper,
      1. open d = x ^ A and e_j = y_j ^ B_j: `opened` is the XOR of both parties'
         and_open arrays;
      2. x & y_j = (d & e_j) ^ (d & B_j) ^ (e_j & A) ^ C_j, local, d & e_j added by `first`.
    Rounds: 1. Comm: (1 + len(bs)) bits per row element from each of the two parties.
    References: Beaver, "Efficient Multiparty Protocols Using Circuit Randomization",
    CRYPTO 1991.
    """
    n = a.shape[0]
    d = opened[:n]
    out = []
    for j, (b, c) in enumerate(zip(bs, cs)):
        e = opened[(j + 1) * n:(j + 2) * n]
        z = (d & b) ^ (e & a) ^ c
        if first:
            z ^= d & e
        out.append(z)
    return out


def group_onehot_reference(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(m,) uint64 below 2^63 -> (m, 16) uint16: the one-hot vectors of the 4-bit groups
    (bit v of [i, g] set iff bits 4g..4g+3 of values[i] are v), XOR the uint16 `mask`."""
    onehot = np.empty((values.size, GROUPS), dtype=np.uint16)
    for g in range(GROUPS):
        nibble = (values >> np.uint64(4 * g)) & _NIBBLE
        onehot[:, g] = _ONE16 << nibble.astype(np.uint16)
    return onehot ^ mask


@njit(cache=True, nogil=True)
def _group_onehot(values, mask, out):
    for i in range(values.size):
        v = values[i]
        for g in range(16):
            bit = np.uint16(1) << np.uint16((v >> np.uint64(4 * g)) & np.uint64(15))
            out[i, g] = bit ^ mask[i, g]


def group_onehot(values: np.ndarray, mask: np.ndarray, out: np.ndarray | None = None):
    """group_onehot_reference, compiled; written into `out` (m, 16) uint16 if given."""
    values = np.ascontiguousarray(values, dtype=np.uint64)
    if out is None:
        out = np.empty((values.size, GROUPS), dtype=np.uint16)
    _group_onehot(values, mask, out)
    return out


def compare_leaves_reference(onehot: np.ndarray, t: np.ndarray, w: np.ndarray):
    """From XOR shares (m, 16) uint16 of the one-hot groups v_g of a value v, and public
    (m,) uint64 t and w (groups t_g, w_g; bit 63 zero): XOR shares of lt_g = [v_g ^ w_g > t_g]
    (the parity of the share's bits j with j ^ w_g > t_g) and eq_g = [v_g ^ w_g == t_g]
    (its bit t_g ^ w_g), as bit-sliced rows (16, W) each. With w = 0: [v_g > t_g], [v_g == t_g]."""
    lt = np.empty((GROUPS, t.size), dtype=np.uint8)
    eq = np.empty((GROUPS, t.size), dtype=np.uint8)
    values = np.arange(16, dtype=np.uint16)
    for g in range(GROUPS):
        tg = ((t >> np.uint64(4 * g)) & _NIBBLE).astype(np.uint16)
        wg = ((w >> np.uint64(4 * g)) & _NIBBLE).astype(np.uint16)
        above = ((values[None, :] ^ wg[:, None]) > tg[:, None]).astype(np.uint16)
        mask = (above << values[None, :]).sum(axis=1, dtype=np.uint16)
        share = onehot[:, g]
        lt[g] = parity16(share & mask)
        eq[g] = (share >> (tg ^ wg)) & _ONE16
    return pack(lt), pack(eq)


_SWAPS = ((np.uint64(1), np.uint64(0x5555)), (np.uint64(2), np.uint64(0x3333)),
          (np.uint64(4), np.uint64(0x0F0F)), (np.uint64(8), np.uint64(0x00FF)))


@njit(cache=True, nogil=True)
def _compare_leaves(onehot, t, w, lt, eq):
    one = np.uint64(1)
    m = t.size
    for g in range(16):
        shift = np.uint64(4 * g)
        for word in range(lt.shape[1]):
            acc_lt = np.uint64(0)
            acc_eq = np.uint64(0)
            for k in range(min(64, m - 64 * word)):
                i = 64 * word + k
                tg = (t[i] >> shift) & np.uint64(15)
                wg = (w[i] >> shift) & np.uint64(15)
                mask = (np.uint64(0xFFFE) << tg) & np.uint64(0xFFFF)  # bits j > t_g
                for step, keep in _SWAPS:  # bit j -> bit j ^ w_g
                    if wg & step:
                        mask = ((mask & keep) << step) | ((mask >> step) & keep)
                share = np.uint64(onehot[i, g])
                x = share & mask
                x ^= x >> np.uint64(8)
                x ^= x >> np.uint64(4)
                x ^= x >> np.uint64(2)
                x ^= x >> one
                acc_lt |= (x & one) << np.uint64(k)
                acc_eq |= ((share >> (tg ^ wg)) & one) << np.uint64(k)
            lt[g, word] = acc_lt
            eq[g, word] = acc_eq


def compare_leaves(onehot: np.ndarray, t: np.ndarray, w: np.ndarray | None = None):
    """compare_leaves_reference, compiled (w = None: zeros)."""
    onehot = np.ascontiguousarray(onehot, dtype=np.uint16)
    t = np.ascontiguousarray(t, dtype=np.uint64)
    w = np.zeros_like(t) if w is None else np.ascontiguousarray(w, dtype=np.uint64)
    lt = np.empty((GROUPS, words(t.size)), dtype=np.uint64)
    eq = np.empty((GROUPS, words(t.size)), dtype=np.uint64)
    _compare_leaves(onehot, t, w, lt, eq)
    return lt, eq


def inject_reference(e: np.ndarray, beta: np.ndarray, mask: np.ndarray,
                     first: bool) -> np.ndarray:
    """A share of the bit e ^ b minus `mask`, from the public bit e (0/1 uint8) and an
    additive share `beta` of the bit b: e + (1 - 2e) b, e added by `first`."""
    e = e.astype(np.uint64)
    return np.where(e.astype(bool), np.negative(beta), beta) + (e if first else 0) - mask


@njit(cache=True, nogil=True)
def _inject(e, beta, mask, first, out):
    for i in range(e.size):
        v = beta[i]
        if e[i]:
            v = np.uint64(0) - v
            if first:
                v += np.uint64(1)
        out[i] = v - mask[i]


def inject(e: np.ndarray, beta: np.ndarray, mask: np.ndarray, first: bool) -> np.ndarray:
    """inject_reference, compiled."""
    out = np.empty(e.size, dtype=np.uint64)
    _inject(e, beta, mask, first, out)
    return out


def inject_product_reference(e: np.ndarray, beta: np.ndarray, rho: np.ndarray,
                             x_b: np.ndarray, x_e: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A share of x (e ^ b) minus `mask`: e x + (1 - 2e) x b, where this party's share of
    x b is x_b beta + rho and its share of x (for the e x term) is x_e."""
    q = x_b * beta + rho
    return np.where(e.astype(bool), x_e - q, q) - mask


@njit(cache=True, nogil=True)
def _inject_product(e, beta, rho, x_b, x_e, mask, out):
    for i in range(e.size):
        q = x_b[i] * beta[i] + rho[i]
        if e[i]:
            q = x_e[i] - q
        out[i] = q - mask[i]


def inject_product(e: np.ndarray, beta: np.ndarray, rho: np.ndarray, x_b: np.ndarray,
                   x_e: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """inject_product_reference, compiled."""
    out = np.empty(e.size, dtype=np.uint64)
    _inject_product(e, beta, rho, np.ascontiguousarray(x_b), np.ascontiguousarray(x_e),
                    mask, out)
    return out

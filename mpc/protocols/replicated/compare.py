"""Secure comparison on replicated shares: [x < 0] from [x], exact for every x in the signed
ring, with one of the three parties dealing for the other two.

Roles: a batch's elements are cut in three parts; in part k the helper is h = k, with
a = h + 1 and b = h + 2 (mod 3), and the three parts run side by side in the same rounds,
so that every party plays every role. With x = x_h + x_a + x_b, party h holds (x_h, x_a),
a holds (x_a, x_b) and b holds (x_b, x_h): h knows s = x_h + x_a and both a and b know
x_b. So, writing "low" for the low 63 bits, MSB(x) = s_63 ^ x_b,63 ^ carry with
carry = [s_low + x_b,low >= 2^63] = [t < s_low] where t = 2^63 - 1 - x_b,low: a comparison
of h's s_low with a's and b's common t.

Protocol less_than_zero([x]):
  1. h cuts s_low into 16 groups of 4 bits v_g and XOR-shares the one-hot vectors
     onehot(v_g) (16 bits each) between a and b: a's share comes from the seed that h
     shares with a, b's share is sent. The same message carries b's corrections for the AND
     triples of step 3, b's additive share of beta (step 4) and, with select, b's share of
     s * beta (step 5).
  2. a and b cut t into groups w_g too and get XOR shares of lt_g = [w_g < v_g] (the
     parity of the one-hot share's bits above w_g) and eq_g = [w_g == v_g] (its bit w_g),
     locally.
  3. A tree over the groups: lt = lt_hi ^ (eq_hi & lt_lo), eq = eq_hi & eq_lo, in 4 levels
     of 8, 4, 2 and 1 merges, each one round of ANDs with h's triples (both ANDs of a merge
     share eq_hi: 3 bits opened per merge, 2 at the root, whose eq is not needed). The
     root's lt is the carry.
  4. Bit to arithmetic with h's random bit beta = gamma ^ s_63, where gamma = gamma_a ^
     gamma_b comes from h's two seeds, and beta = B_a + B_b additively: a and b open
     e = carry ^ x_b,63 ^ gamma = MSB(x) ^ beta (one bit each way); then MSB(x) =
     e + (1 - 2e) beta, which a and b hold additively.
  5. With select: x beta = s beta + x_b B_a + x_b B_b, where h sent b s beta - rho and rho
     comes from h's seed with a; then x MSB(x) = e x + (1 - 2e) x beta, held additively.
  6. Reshare each result M = M_a + M_b as replicated: its components y_h and y_a come from
     h's seeds with b and with a; a sends M_a - y_a to b, b sends M_b - y_h to a, and both
     then hold y_b = (M_a - y_a) + (M_b - y_h).
Rounds: 7 per batch (1 + 4 + 1 + 1); h only sends, it receives nothing.
Comm per element of a part (bits are sliced into 64-bit words), by role:
  h -> b: 32 (one-hot) + 29/8 (triples) + 8 (beta) = 43.625 bytes, + 8 with select;
  a -> b and b -> a: 44/8 (tree) + 1/8 (e) + 8 (reshare) = 13.625 bytes, + 8 with select;
  so each party sends 23.625 bytes (189 bits) per element, 31.625 (253 bits) with select,
  exactly when the batch is a multiple of 192 elements (each part a multiple of 64).
Few rounds (batches below FEW_ROUNDS_BELOW elements, where a round costs more than the
bytes): the same leaves, then the tree in 2 levels of 4-input merges, the second one with
an arithmetic result, so the bit injection needs no round of its own:
  1. As above; h's message to b carries the one-hot share, b's shares of the first level's
     mask products and b's additive shares of the root's values (below).
  2. Each block of 4 groups: lt = l3 ^ e3 l2 ^ e3 e2 l1 ^ e3 e2 e1 l0, eq = e3 e2 e1 e0.
     a and b open d_i = x_i ^ a_i once for each of the 8 leaves of a block (masks a_i from
     h's two seeds) and compute each monomial as XOR over S of (AND of d over M - S) A_S,
     with h's XOR shares of the products A_S of the masks over every S of 2 or more of a
     monomial's variables (22 per block): one round for every monomial of the level.
  3. The root, over the blocks' L0..L3, E1..E3: carry = L3 + E3 L2 + E3 E2 L1 +
     E3 E2 E1 L0, as integers (the monomials exclude each other). With d_i opened as
     before, x_i = d_i + (1 - 2 d_i) r_i, so carry = sum over S of K_S R_S, R_S the
     product of the masks r_i over S (R_{} = 1) and K_S public to a and b once the d_i are
     open. MSB(x) = s_63 ^ x_b,63 ^ carry = s_63 + sigma x_b,63 + tau sigma carry with
     sigma = 1 - 2 s_63 (h's) and tau = 1 - 2 x_b,63 (a's and b's): h deals additive shares
     of sigma R_S for the 23 subsets and of s_63 (and, with select, the same times s:
     x MSB(x) adds x_b times these), so a and b hold MSB(x) additively after the round.
  4. The reshare of step 6.
Rounds: 4. Comm per element of a part (n a multiple of 64): h -> b 32 + 88/8 + 24 * 8 =
235 bytes (427 with select: 24 more ring elements); a -> b and b -> a 32/8 + 7/8 + 8 =
12.875 (20.875): 86.92 bytes per element from each party (156.25 with select), against
23.625 (31.625) in 7 rounds. What a and b see is as above: openings of fresh masks,
seed-masked shares and the reshare's masked parts.
The rounds are generic (run_batch): they compute [v ^ w > t] for a secret v < 2^63 of the
helper's and public t, w of the other two; the sign takes v = s_low, w = 0 (class Sign),
mpc.protocols.replicated.bernoulli a random v and w (a secret coin).
References: Mohassel and Rindal, "ABY3", CCS 2018, Sec. 5.3 (the sign by a carry) and 5.4
(bit injection); Wagh, Gupta and Chandran, "SecureNN", PETS 2019 (a third party dealing for
the other two); Escudero, Ghosh, Keller, Rachuri and Scholl, "Improved Primitives for MPC
over Mixed Arithmetic-Binary Circuits", CRYPTO 2020 Sec. 5 (a helper among the servers);
Rotaru and Wood, "MArBled Circuits", INDOCRYPT 2019 (daBits); Damgard, Fitzi, Kiltz,
Nielsen and Toft, TCC 2006 (products of several inputs in one round from products of their
masks).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mpc.protocols.replicated import binary

LOW63 = np.uint64((1 << 63) - 1)
LEVELS = (8, 4, 2, 1)  # merges per tree level
CHUNK = 1 << 20      # elements per batch: bounds working memory
FEW_ROUNDS_BELOW = 1 << 12
"""Batches of fewer elements take the 4-round variant (few_rounds): 3 rounds fewer for
about 63 bytes more per element a party (125 with select), a gain where a round costs
more than that, i.e. on the small tensors of round-bound steps."""
ROUND_OPS = ("ltz-deal",) + ("ltz-and",) * len(LEVELS) + ("ltz-b2a", "ltz-reshare")


def less_than_zero(ctx, zs: np.ndarray, select: bool = False, chunk: int = CHUNK,
                   additive: bool = False):
    """[x < 0] as replicated integer 0/1 shares of shape (2, m) (x read as signed 64-bit),
    and with `select` also [x * (x < 0)]; `zs` is this party's replicated share (2, m).
    With `additive`, without the last round (the reshare): this party's additive parts
    (m,) instead (the three add up to the result; for a consumer that takes such parts,
    as a fused truncation does: mpc.protocols.replicated.truncation.truncate_product).

    Batches of at most `chunk` elements run one after the other: 7 rounds each; 23.625
    bytes per element from each party, 31.625 with `select`; below FEW_ROUNDS_BELOW
    elements 4 rounds, 86.92 and 156.25 bytes (module docstring).
    Example:
        bit, picked = less_than_zero(ctx, xs, select=True)   # relu(x) = x - picked
    """
    if ctx.n_parties != 3:
        raise ValueError(f"replicated comparison needs 3 parties, got {ctx.n_parties}")
    zs = np.asarray(zs)
    if zs.dtype != np.uint64 or zs.ndim != 2 or zs.shape[0] != 2:
        raise ValueError(f"less_than_zero takes a replicated share of shape (2, m) and dtype "
                         f"uint64, got shape {zs.shape} and dtype {zs.dtype}")
    if chunk < 1:
        raise ValueError(f"less_than_zero: chunk must be a positive number of elements, "
                         f"got {chunk}")
    m = zs.shape[1]
    lead = () if additive else (2,)
    bit = np.empty(lead + (m,), dtype=np.uint64)
    picked = np.empty(lead + (m,), dtype=np.uint64) if select else None
    for start in range(0, m, chunk):
        part = slice(start, min(start + chunk, m))
        bit[..., part], got = run_batch(ctx, Sign(np.ascontiguousarray(zs[:, part])),
                                        part.stop - part.start, select, additive=additive)
        if select:
            picked[..., part] = got
    return bit, picked


class Sign:
    """What each role computes from [x] for the sign (module docstring): h's secret s_low
    and s_63, a's and b's public t (and x_b,63 for a), and the select operands."""

    def __init__(self, zs: np.ndarray):
        self.zs = zs

    def helper(self, ctx, part: slice, nonce: int, h: int):
        """(secret < 2^63, top bit folded into beta or None, s for select)."""
        s = self.zs[0, part] + self.zs[1, part]
        return s & LOW63, s >> np.uint64(63), s

    def computer(self, ctx, part: slice, nonce: int, h: int, first: bool):
        """(t, w or None, x_b's top bit (XORed into e by a) or None, x_b and x_e for
        select)."""
        zs = self.zs[:, part]
        x_b = zs[1] if first else zs[0]
        x_e = zs[0] + zs[1] if first else zs[1]
        return ~x_b & LOW63, None, x_b >> np.uint64(63), x_b, x_e


def run_batch(ctx, task, m: int, select: bool, few: bool | None = None,
              additive: bool = False):
    """One batch of m elements: cut in three parts, party k the helper of part k, the three
    runs in the same 7 rounds, or 4 with `few` (by default: below FEW_ROUNDS_BELOW
    elements) (one exchange a round carries every run's messages).
    `task` (Sign, or mpc.protocols.replicated.bernoulli's coin) says what each role
    compares; returns this party's replicated shares (bit, picked or None), or with
    `additive` its additive parts, one round fewer (less_than_zero)."""
    few = m < FEW_ROUNDS_BELOW if few is None else few
    ops = FEW_ROUND_OPS if few else ROUND_OPS
    ops = ops[:-1] if additive else ops
    helper, computer = (_few_helper, _few_computer) if few else (_helper, _computer)
    seqs = [ctx.next_seq() for _ in ops]
    runs = []
    for h, part in enumerate(_thirds(m)):
        if part.stop > part.start:
            role = (ctx.pid - h) % 3
            n = part.stop - part.start
            if role == 0:
                run = helper(ctx, task.helper(ctx, part, seqs[h], h), n, seqs[h], h, select,
                             additive)
            else:
                run = computer(ctx, task.computer(ctx, part, seqs[h], h, role == 1), n,
                               seqs[h], h, role == 1, select, additive)
            runs.append((part, run))
    steps = [next(run) for _, run in runs]
    results = [None] * len(runs)
    for seq, op in zip(seqs, ops):
        sends, expects = {}, {}
        for out, want in steps:
            sends.update(out)
            expects.update(want)
        got = ctx.transport.exchange(seq, op, sends, expects) if sends or expects else {}
        for k, (_, run) in enumerate(runs):
            try:
                steps[k] = run.send({p: got[p] for p in steps[k][1]})
            except StopIteration as done:
                steps[k], results[k] = ({}, {}), done.value
    lead = () if additive else (2,)
    bit = np.empty(lead + (m,), dtype=np.uint64)
    picked = np.empty(lead + (m,), dtype=np.uint64) if select else None
    for (part, _), (part_bit, part_picked) in zip(runs, results):
        bit[..., part] = part_bit
        if select:
            picked[..., part] = part_picked
    return bit, picked


def _thirds(m: int) -> list[slice]:
    """Three consecutive parts of m elements, as equal as whole 64-bit words allow."""
    count = binary.words(m)
    ends = np.cumsum([count // 3 + (k < count % 3) for k in range(3)]) * binary.WORD_BITS
    cuts = [0] + [min(m, int(end)) for end in ends]
    return [slice(cuts[k], cuts[k + 1]) for k in range(3)]


def _helper(ctx, inputs, m: int, nonce: int, h: int, select: bool, additive: bool):
    """The helper's run (steps 1, 4, 5 and its result components); a generator that
    yields (sends, expects) for each round and returns (bit, picked) shares."""
    a, b = (h + 1) % 3, (h + 2) % 3
    ra = _seed_stream(ctx, a, nonce, m, True, select)
    rb = _seed_stream(ctx, b, nonce, m, False, select)
    yield {b: _deal(inputs, ra, rb, select)}, {}
    for _ in ROUND_OPS[1:-1 if additive else None]:
        yield {}, {}
    return _helper_result(ra, rb, m, select, additive)


def _helper_result(ra, rb, m: int, select: bool, additive: bool):
    """The helper's components (y_h, y_a) of the results, or its additive parts: 0."""
    if additive:
        return np.zeros(m, np.uint64), (np.zeros(m, np.uint64) if select else None)
    return _stack(rb["out"], ra["out"]), (_stack(rb["picked"], ra["picked"])
                                          if select else None)


def _receive_deal(r: dict, h: int, first: bool, layout, m: int, select: bool):
    """Round 1 for a computer: a draws its items from the seed it shares with h (`r`
    already), b receives the rest from h's deal, cut by `layout`, into `r`."""
    if first:
        yield {}, {}
        return
    sizes = layout(m, select)
    got = yield {}, {h: (np.uint64, (_total(sizes),))}
    r.update(_cut(got[h], sizes))


def _exchange_outputs(peer: int, first: bool, outs: list, masks: list):
    """The last round for a computer: each sends the other its masked results (M - y_a or
    M - y_h), so both know y_b; returns this computer's components of the result (and of
    the selected value)."""
    mine = np.stack(outs)
    got = yield {peer: mine}, {peer: (np.uint64, mine.shape)}
    y_b = mine + got[peer]
    outs = [_stack(mask, y) if first else _stack(y, mask) for mask, y in zip(masks, y_b)]
    return outs[0], (outs[1] if len(outs) > 1 else None)


def _computer(ctx, inputs, m: int, nonce: int, h: int, first: bool, select: bool,
              additive: bool):
    """a's run (first) or b's (steps 2 to 6); a generator like _helper."""
    t, w, flip, x_b, x_e = inputs
    a, b = (h + 1) % 3, (h + 2) % 3
    peer = b if first else a
    r = _seed_stream(ctx, h, nonce, m, first, select)
    yield from _receive_deal(r, h, first, _deal_layout, m, select)
    lt, eq = binary.compare_leaves(r["onehot"].view(np.uint16), t, w)
    for level, n in enumerate(LEVELS):
        ys = [lt[0::2], eq[0::2]][:_products(n)]
        bs = [r["B", level, j] for j in range(len(ys))]
        mine = binary.and_open(eq[1::2], ys, r["A", level], bs)
        got = yield {peer: mine}, {peer: (np.uint64, mine.shape)}
        ands = binary.and_finish(mine ^ got[peer], first, r["A", level], bs,
                                 [r["C", level, j] for j in range(len(ys))])
        lt = lt[1::2] ^ ands[0]
        if n > 1:
            eq = ands[1]
    e_rows = lt ^ r["gamma"]
    if flip is not None and first:
        e_rows ^= binary.pack(flip[None, :])
    got = yield {peer: e_rows}, {peer: (np.uint64, e_rows.shape)}
    e = binary.unpack(e_rows ^ got[peer], m)[0]
    if additive:  # M_a or M_b
        zero = np.zeros(m, np.uint64)
        return binary.inject(e, r["beta"], zero, first), (
            binary.inject_product(e, r["beta"], r["rho"], x_b, x_e, zero) if select else None)
    mine = [binary.inject(e, r["beta"], r["out"], first)]  # M - y_a (a) or M - y_h (b)
    masks = [r["out"]]
    if select:
        mine.append(binary.inject_product(e, r["beta"], r["rho"], x_b, x_e, r["picked"]))
        masks.append(r["picked"])
    return (yield from _exchange_outputs(peer, first, mine, masks))


def _deal(inputs, ra, rb, select: bool) -> np.ndarray:
    """h's message to b (steps 1, 3, 4, 5): one-hot share, triple corrections, beta, s beta."""
    secret, top, s = inputs
    m = secret.size
    sizes = _deal_layout(m, select)
    message = np.empty(_total(sizes), dtype=np.uint64)
    parts = _cut(message, sizes)
    binary.group_onehot(secret, ra["onehot"].view(np.uint16),
                        out=parts["onehot"].view(np.uint16))
    for level, n in enumerate(LEVELS):
        for j in range(_products(n)):
            parts["C", level, j][...] = binary.deal_and(
                ra["A", level], rb["A", level], ra["B", level, j], rb["B", level, j],
                ra["C", level, j])
    beta = binary.unpack(ra["gamma"] ^ rb["gamma"], m)[0].astype(np.uint64)
    if top is not None:
        beta ^= top
    np.subtract(beta, ra["beta"], out=parts["beta"])
    if select:
        np.subtract(s * beta, ra["rho"], out=parts["rho"])
    return message


def _products(n: int) -> int:
    """ANDs with eq_hi per merge: lt's and eq's, only lt's at the root."""
    return 1 if n == 1 else 2


def _seed_layout(m: int, for_a: bool, select: bool):
    """What h derives with a (for_a) or with b from their common seed, in stream order."""
    width = binary.words(m)
    parts = [("onehot", (m, 4))] if for_a else []
    for level, n in enumerate(LEVELS):
        parts.append((("A", level), (n, width)))
        parts += [(("B", level, j), (n, width)) for j in range(_products(n))]
        if for_a:
            parts += [(("C", level, j), (n, width)) for j in range(_products(n))]
    parts.append(("gamma", (1, width)))
    if for_a:
        parts.append(("beta", (m,)))
    parts.append(("out", (m,)))
    if select:
        parts += ([("rho", (m,))] if for_a else []) + [("picked", (m,))]
    return parts


def _deal_layout(m: int, select: bool):
    """The parts of h's message to b, in order (see _deal)."""
    width = binary.words(m)
    parts = [("onehot", (m, 4))]
    for level, n in enumerate(LEVELS):
        parts += [(("C", level, j), (n, width)) for j in range(_products(n))]
    parts.append(("beta", (m,)))
    if select:
        parts.append(("rho", (m,)))
    return parts


def _seed_stream(ctx, peer: int, nonce: int, m: int, for_a: bool, select: bool) -> dict:
    sizes = _seed_layout(m, for_a, select)
    return _cut(ctx.pairwise_ring(peer, nonce, (_total(sizes),)), sizes)


def _total(sizes) -> int:
    return sum(math.prod(shape) for _, shape in sizes)


def _cut(flat: np.ndarray, sizes) -> dict:
    out, start = {}, 0
    for name, shape in sizes:
        count = math.prod(shape)
        out[name] = flat[start:start + count].reshape(shape)
        start += count
    return out


def _stack(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.stack([first, second])


# ---------------------------------------------------------------- the 4-round variant
FEW_ROUND_OPS = ("ltz-deal", "ltz-and", "ltz-root", "ltz-reshare")
_MERGE = (0b1000, 0b1000_0100, 0b1100_0010, 0b1110_0001)  # lt's monomials over 4 blocks
_EQ = 0b1111_0000  # eq's monomial (variables l0..l3 = bits 0..3, e0..e3 = bits 4..7)
_ROOT_VARS = (0, 1, 2, 3, 5, 6, 7)  # the root needs no e0


def _submasks(mask: int) -> list[int]:
    """Every subset of the bit set `mask` (the empty one last)."""
    out, sub = [], mask
    while True:
        out.append(sub)
        if sub == 0:
            return out
        sub = (sub - 1) & mask


def _closure(monomials, smallest: int) -> tuple[int, ...]:
    """The subsets of at least `smallest` variables of the monomials, in a fixed order."""
    subsets = {s for m in monomials for s in _submasks(m) if bin(s).count("1") >= smallest}
    return tuple(sorted(subsets, key=lambda s: (bin(s).count("1"), s)))


_LEVEL_SETS = _closure(_MERGE + (_EQ,), 2)   # 22 mask products dealt for the first level
_ROOT_SETS = (0,) + _closure(_MERGE, 1)       # 1 and the 22 products of the root's masks


def _bits_of(mask: int) -> list[int]:
    return [i for i in range(8) if mask >> i & 1]


def _level_terms():
    """The first level's terms, for _beaver_level: per term the output (0: lt, 1: eq), the
    variables of d's product, and the share it ANDs with (a variable's mask i, 8 + k for
    the k-th of _LEVEL_SETS, -1 for none: the S = {} term, added by `first`)."""
    rows = []
    for out, monomials in ((0, _MERGE), (1, (_EQ,))):
        for m in monomials:
            for sub in _submasks(m):
                bits = _bits_of(sub)
                share = -1 if not bits else bits[0] if len(bits) == 1 else \
                    8 + _LEVEL_SETS.index(sub)
                rows.append((out, _bits_of(m & ~sub), share))
    return _tables(rows)


def _root_terms():
    """The root's terms, for _root_sum: per (monomial M, subset S) the variables of M (as
    rows of the opened bits, _ROOT_VARS' order), whether each is in S, and S's index in
    _ROOT_SETS."""
    rows = []
    for m in _MERGE:
        for sub in _submasks(m):
            bits = _bits_of(m)
            rows.append(([_ROOT_VARS.index(i) for i in bits], [sub >> i & 1 for i in bits],
                         _ROOT_SETS.index(sub)))
    terms = np.zeros((len(rows), 4), np.int64)
    flags = np.zeros((len(rows), 4), np.int64)
    for t, (vs, fs, _) in enumerate(rows):
        terms[t, :len(vs)], flags[t, :len(fs)] = vs, fs
    return (terms, flags, np.array([len(r[0]) for r in rows], np.int64),
            np.array([r[2] for r in rows], np.int64))


def _tables(rows):
    outs = np.array([r[0] for r in rows], np.int64)
    dvars = np.zeros((len(rows), 4), np.int64)
    for t, r in enumerate(rows):
        dvars[t, :len(r[1])] = r[1]
    return (outs, dvars, np.array([len(r[1]) for r in rows], np.int64),
            np.array([r[2] for r in rows], np.int64))


@njit(cache=True, nogil=True)
def _beaver_level(d, shares, outs, dvars, ndvars, which, first, out):
    """out[o] ^= (AND of d over the term's variables) & its share, for every term (the
    shares: masks and mask products, rows (8 + 22, blocks, W)); out (2, blocks, W) zero."""
    ones = ~np.uint64(0)
    for t in range(outs.shape[0]):
        s = which[t]
        if s < 0 and not first:
            continue
        for blk in range(d.shape[1]):
            for w in range(d.shape[2]):
                v = ones
                for k in range(ndvars[t]):
                    v &= d[dvars[t, k], blk, w]
                if s >= 0:
                    v &= shares[s, blk, w]
                out[outs[t], blk, w] ^= v


@njit(cache=True, nogil=True)
def _root_sum(opened, shares, terms, flags, nvars, which, out):
    """out = sum over the terms of prod_i (1 - 2 d_i if i in S else d_i) times the share of
    S's value: the root's sum over S of K_S [sigma R_S] (x_i = d_i + (1 - 2 d_i) r_i)."""
    one, two = np.uint64(1), np.uint64(2)
    for e in range(opened.shape[1]):
        acc = np.uint64(0)
        for t in range(terms.shape[0]):
            coef = one
            for k in range(nvars[t]):
                bit = opened[terms[t, k], e]
                coef *= (one - two * bit) if flags[t, k] else bit
            acc += coef * shares[which[t], e]
        out[e] = acc


_LEVEL_TERMS = _level_terms()
_ROOT_TERMS = _root_terms()


def _boolean_level(d, shares, masks, first: bool):
    """XOR shares of the four blocks' (lt, eq) from the opened d = x ^ a (public rows
    (8 variables, 4 blocks, W)), this party's shares of the masks a_i (same shape) and of
    the products A_S = AND of a_i over S (|S| >= 2; rows in _LEVEL_SETS' order): for a
    monomial M, x_M = XOR over S in M of (AND of d over M - S) & A_S, the S = {} term
    (d's product alone) added by `first`. Beaver's method with one opening per variable
    for every monomial of the block (Beaver, CRYPTO 1991; the multi-input products as in
    Damgard, Fitzi, Kiltz, Nielsen and Toft, TCC 2006)."""
    out = np.zeros((2,) + d.shape[1:], np.uint64)
    _beaver_level(np.ascontiguousarray(d), np.ascontiguousarray(np.concatenate([masks, shares])),
                  *_LEVEL_TERMS, first, out)
    return out[0], out[1]


def _few_seed_layout(m: int, for_a: bool, select: bool):
    """What h derives with a (for_a) or with b from their common seed, in stream order."""
    width = binary.words(m)
    values = len(_ROOT_SETS) + 1
    parts = [("onehot", (m, 4))] if for_a else []
    parts.append(("A", (8, 4, width)))
    if for_a:
        parts.append(("C", (len(_LEVEL_SETS), 4, width)))
    parts.append(("R", (8, width)))
    if for_a:
        parts.append(("V", (values * (2 if select else 1), m)))
    parts.append(("out", (m,)))
    if select:
        parts.append(("picked", (m,)))
    return parts


def _few_deal_layout(m: int, select: bool):
    """h's message to b: one-hot share, first-level corrections, root values."""
    values = len(_ROOT_SETS) + 1
    return [("onehot", (m, 4)), ("C", (len(_LEVEL_SETS), 4, binary.words(m))),
            ("V", (values * (2 if select else 1), m))]


def _few_stream(ctx, peer: int, nonce: int, m: int, for_a: bool, select: bool) -> dict:
    sizes = _few_seed_layout(m, for_a, select)
    return _cut(ctx.pairwise_ring(peer, nonce, (_total(sizes),)), sizes)


def _and_all(rows):
    out = rows[0]
    for row in rows[1:]:
        out = out & row
    return out


def _few_helper(ctx, inputs, m: int, nonce: int, h: int, select: bool, additive: bool):
    """The helper's run of the 4-round variant: its one message to b in round 1."""
    secret, top, s = inputs
    a, b = (h + 1) % 3, (h + 2) % 3
    ra = _few_stream(ctx, a, nonce, m, True, select)
    rb = _few_stream(ctx, b, nonce, m, False, select)
    sizes = _few_deal_layout(m, select)
    message = np.empty(_total(sizes), dtype=np.uint64)
    parts = _cut(message, sizes)
    binary.group_onehot(secret, ra["onehot"].view(np.uint16),
                        out=parts["onehot"].view(np.uint16))
    masks = ra["A"] ^ rb["A"]  # (8 variables, 4 blocks, W)
    for k, sub in enumerate(_LEVEL_SETS):
        parts["C"][k] = _and_all([masks[i] for i in _bits_of(sub)]) ^ ra["C"][k]
    root = binary.unpack(ra["R"] ^ rb["R"], m).astype(np.uint64)  # (8, m) mask bits
    top = np.zeros(m, np.uint64) if top is None else top
    sigma = np.uint64(1) - (top << np.uint64(1))
    values = [sigma * _and_all([root[i] for i in _bits_of(sub)]) if sub else sigma
              for sub in _ROOT_SETS] + [top]
    with np.errstate(over="ignore"):
        if select:
            values += [s * v for v in values]
        np.subtract(np.stack(values), ra["V"], out=parts["V"])
    yield {b: message}, {}
    for _ in FEW_ROUND_OPS[1:-1 if additive else None]:
        yield {}, {}
    return _helper_result(ra, rb, m, select, additive)


def _few_computer(ctx, inputs, m: int, nonce: int, h: int, first: bool, select: bool,
                  additive: bool):
    """a's run (first) or b's of the 4-round variant (module docstring of few_rounds)."""
    t, w, flip, x_b, _ = inputs
    a, b = (h + 1) % 3, (h + 2) % 3
    peer = b if first else a
    r = _few_stream(ctx, h, nonce, m, first, select)
    yield from _receive_deal(r, h, first, _few_deal_layout, m, select)
    lt, eq = binary.compare_leaves(r["onehot"].view(np.uint16), t, w)
    width = lt.shape[1]
    leaves = np.concatenate([lt.reshape(4, 4, width).transpose(1, 0, 2),
                             eq.reshape(4, 4, width).transpose(1, 0, 2)])  # (8, 4, W)
    mine = leaves ^ r["A"]
    got = yield {peer: mine}, {peer: (np.uint64, mine.shape)}
    d = mine ^ got[peer]
    block_lt, block_eq = _boolean_level(d, r["C"], r["A"], first)
    roots = np.concatenate([block_lt, block_eq])  # L0..L3, E0..E3: (8, W)
    mine = (roots ^ r["R"])[list(_ROOT_VARS)]
    got = yield {peer: mine}, {peer: (np.uint64, mine.shape)}
    opened = binary.unpack(mine ^ got[peer], m).astype(np.uint64)
    values = len(_ROOT_SETS) + 1
    v = r["V"]
    top_bit = np.zeros(m, np.uint64) if flip is None else flip.astype(np.uint64)
    tau = np.uint64(1) - (top_bit << np.uint64(1))
    with np.errstate(over="ignore"):
        carry = np.empty(m, np.uint64)  # [sigma carry]
        _root_sum(opened, np.ascontiguousarray(v[:values - 1]), *_ROOT_TERMS, carry)
        bit = v[values - 1] + top_bit * v[0] + tau * carry
        picked = None
        if select:
            u = v[values:]
            scarry = np.empty(m, np.uint64)  # [s sigma carry]
            _root_sum(opened, np.ascontiguousarray(u[:values - 1]), *_ROOT_TERMS, scarry)
            picked = (u[values - 1] + x_b * v[values - 1] + top_bit * (u[0] + x_b * v[0])
                      + tau * (scarry + x_b * carry))
        if additive:
            return bit, picked
        outs, masks = [bit - r["out"]], [r["out"]]
        if select:
            outs.append(picked - r["picked"])
            masks.append(r["picked"])
    return (yield from _exchange_outputs(peer, first, outs, masks))

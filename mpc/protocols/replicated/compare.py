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
The rounds are generic (run_batch): they compute [v ^ w > t] for a secret v < 2^63 of the
helper's and public t, w of the other two; the sign takes v = s_low, w = 0 (class Sign),
mpc.protocols.replicated.bernoulli a random v and w (a secret coin).
References: Mohassel and Rindal, "ABY3", CCS 2018, Sec. 5.3 (the sign by a carry) and 5.4
(bit injection); Wagh, Gupta and Chandran, "SecureNN", PETS 2019 (a third party dealing for
the other two); Escudero, Ghosh, Keller, Rachuri and Scholl, "Improved Primitives for MPC
over Mixed Arithmetic-Binary Circuits", CRYPTO 2020 Sec. 5 (a helper among the servers);
Rotaru and Wood, "MArBled Circuits", INDOCRYPT 2019 (daBits).
"""

from __future__ import annotations

import math

import numpy as np

from mpc.protocols.replicated import binary

LOW63 = np.uint64((1 << 63) - 1)
LEVELS = (8, 4, 2, 1)  # merges per tree level
CHUNK = 1 << 20      # elements per batch: bounds working memory
ROUND_OPS = ("ltz-deal",) + ("ltz-and",) * len(LEVELS) + ("ltz-b2a", "ltz-reshare")


def less_than_zero(ctx, zs: np.ndarray, select: bool = False, chunk: int = CHUNK):
    """[x < 0] as replicated integer 0/1 shares of shape (2, m) (x read as signed 64-bit),
    and with `select` also [x * (x < 0)]; `zs` is this party's replicated share (2, m).

    Batches of at most `chunk` elements run one after the other: 7 rounds each; 23.625
    bytes per element from each party, 31.625 with `select` (module docstring).
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
    bit = np.empty((2, m), dtype=np.uint64)
    picked = np.empty((2, m), dtype=np.uint64) if select else None
    for start in range(0, m, chunk):
        part = slice(start, min(start + chunk, m))
        bit[:, part], got = run_batch(ctx, Sign(np.ascontiguousarray(zs[:, part])),
                                      part.stop - part.start, select)
        if select:
            picked[:, part] = got
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
        """(t, w or None, bit XORed into e by a or None, x_b and x_e for select)."""
        zs = self.zs[:, part]
        x_b = zs[1] if first else zs[0]
        x_e = zs[0] + zs[1] if first else zs[1]
        return ~x_b & LOW63, None, (x_b >> np.uint64(63)) if first else None, x_b, x_e


def run_batch(ctx, task, m: int, select: bool):
    """One batch of m elements: cut in three parts, party k the helper of part k, the three
    runs in the same 7 rounds (one exchange a round carries every run's messages).
    `task` (Sign, or mpc.protocols.replicated.bernoulli's coin) says what each role
    compares; returns this party's replicated shares (bit, picked or None)."""
    seqs = [ctx.next_seq() for _ in ROUND_OPS]
    runs = []
    for h, part in enumerate(_thirds(m)):
        if part.stop > part.start:
            role = (ctx.pid - h) % 3
            n = part.stop - part.start
            if role == 0:
                run = _helper(ctx, task.helper(ctx, part, seqs[h], h), n, seqs[h], h, select)
            else:
                run = _computer(ctx, task.computer(ctx, part, seqs[h], h, role == 1), n,
                                seqs[h], h, role == 1, select)
            runs.append((part, run))
    steps = [next(run) for _, run in runs]
    results = [None] * len(runs)
    for seq, op in zip(seqs, ROUND_OPS):
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
    bit = np.empty((2, m), dtype=np.uint64)
    picked = np.empty((2, m), dtype=np.uint64) if select else None
    for (part, _), (part_bit, part_picked) in zip(runs, results):
        bit[:, part] = part_bit
        if select:
            picked[:, part] = part_picked
    return bit, picked


def _thirds(m: int) -> list[slice]:
    """Three consecutive parts of m elements, as equal as whole 64-bit words allow."""
    count = binary.words(m)
    ends = np.cumsum([count // 3 + (k < count % 3) for k in range(3)]) * binary.WORD_BITS
    cuts = [0] + [min(m, int(end)) for end in ends]
    return [slice(cuts[k], cuts[k + 1]) for k in range(3)]


def _helper(ctx, inputs, m: int, nonce: int, h: int, select: bool):
    """The helper's run (steps 1, 4, 5 and its result components); a generator that
    yields (sends, expects) for each round and returns (bit, picked) shares."""
    a, b = (h + 1) % 3, (h + 2) % 3
    ra = _seed_stream(ctx, a, nonce, m, True, select)
    rb = _seed_stream(ctx, b, nonce, m, False, select)
    yield {b: _deal(inputs, ra, rb, select)}, {}
    for _ in ROUND_OPS[1:]:
        yield {}, {}
    return _stack(rb["out"], ra["out"]), (_stack(rb["picked"], ra["picked"])
                                          if select else None)


def _computer(ctx, inputs, m: int, nonce: int, h: int, first: bool, select: bool):
    """a's run (first) or b's (steps 2 to 6); a generator like _helper."""
    t, w, flip, x_b, x_e = inputs
    a, b = (h + 1) % 3, (h + 2) % 3
    peer = b if first else a
    r = _seed_stream(ctx, h, nonce, m, first, select)
    if first:
        yield {}, {}
    else:
        sizes = _deal_layout(m, select)
        got = yield {}, {h: (np.uint64, (_total(sizes),))}
        r.update(_cut(got[h], sizes))
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
    if flip is not None:
        e_rows ^= binary.pack(flip[None, :])
    got = yield {peer: e_rows}, {peer: (np.uint64, e_rows.shape)}
    e = binary.unpack(e_rows ^ got[peer], m)[0]
    mine = [binary.inject(e, r["beta"], r["out"], first)]  # M - y_a (a) or M - y_h (b)
    masks = [r["out"]]
    if select:
        mine.append(binary.inject_product(e, r["beta"], r["rho"], x_b, x_e, r["picked"]))
        masks.append(r["picked"])
    mine = np.stack(mine)
    got = yield {peer: mine}, {peer: (np.uint64, mine.shape)}
    y_b = mine + got[peer]
    outs = [_stack(mask, y) if first else _stack(y, mask) for mask, y in zip(masks, y_b)]
    return outs[0], (outs[1] if select else None)


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

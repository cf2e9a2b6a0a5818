"""Exact fixed-point truncation on replicated shares, one of the three parties helping the
other two, fused with a product where there is one.

Roles: for a helper h, a = h + 1 and b = h + 2 (mod 3). The elements of one call are cut
into three near-equal ranges whose helpers are k, k + 1, k + 2 (mod 3) for the protocol's
k-th truncation (ReplicatedProtocol.next_helper: every party counts the same calls), all
three in the same rounds, the messages to each peer concatenated: so every party plays
every role on a third of the elements and sends about the average (a call of fewer than
SPLIT_FROM = 1024 elements has one helper, rotating from call to call, who skips the
call's waits: such calls are bound by rounds, not bytes). The helper plays a dealer for a and
b, seed-compressed, and never receives anything.

Notation: f = bits, c63 = c >> 63, w the width of the top corrections (below), and
pub(c) = (c >> f) - 2^(62-f). The result is y = pub(c) + t - 2^(64-f) c63 m for a public
c = z + 2^62 + r, a mask r, m = r >> 63 and t = 2^(63-f) m - ((r mod 2^63) >> f) (the
dealer's exact truncation, mpc.protocols.dealer.truncation): floor(z / 2^f) or that plus
one. The two variants differ in how t reaches a and b.

Fused with a product (z = z_h + z_a + z_b, each party's local terms plus a zero-sharing),
w = f + 1:
  1. h draws A_a (with a) and A_b (with b), 64 - f bits each, and a private rho < 2^f:
     r = 2^f (A_a + A_b) + rho. With S = A_a + A_b (no wrap) and q = S >> (63 - f),
     m = q mod 2 and t = 2^(63-f) k - A_a - A_b for k = m + q: t is linear in the seeds
     but for k, which needs only f + 1 bits. h sends w_h = z_h + rho to a and to b, and
     b the corrections k_b = k - k_a mod 2^w and m_b = m - m_a mod 2^f (k_a, m_a from its
     seed with a). a sends b w_a = z_a + 2^f A_a + 2^62, b sends a w_b = z_b + 2^f A_b;
     both get c = w_a + w_b + w_h = z + 2^62 + r, uniform to each (rho and the other's A
     unknown). T_a = -A_a, T_b = -A_b.
Truncation alone (z regrouped from the replicated shares: z_h = 0, z_a = x_a + x_b,
z_b = x_h), w = f: r = r_a + r_b from the two seeds (no rho, so no w_h); h sends b the
corrections T_b = t - T_a (64 bits; T_a from its seed with a) and m_b; k = 0.
  2. The top of the result: a's share of y is pub(c) + T_a + 2^(64-w)(k_a - 2^(w-f) c63 m_a),
     b's is T_b + 2^(64-w)(k_b - 2^(w-f) c63 m_b). The output components are
     Y_a = T_a + 2^(64-w) s_a and Y_h = T_b + 2^(64-w) s_b (s_a, s_b < 2^w from h's seeds
     with a and with b: h holds them without a message), so a sends b
     e_a = k_a - 2^(w-f) c63 m_a - s_a mod 2^w and b sends a e_b likewise: w bits each,
     not a ring element, because both know pub(c). Then Y_b = pub(c) + 2^(64-w)(e_a + e_b)
     and y = Y_a + Y_b + Y_h: a holds (Y_a, Y_b), b (Y_b, Y_h), h (Y_h, Y_a).
One receiver (a fused product of ONE_RECEIVER_FROM elements or more, where bytes cost more
than a round): h sends w_h to a only and b only its corrections, b sends w_b to a, and
a alone gets c (round 1). a sends b d_a = pub(c) + 2^(64-w) e_a and the packed bit c63
(round 2); b, which needs only c63 of c, computes e_b, so Y_b = d_a + 2^(64-w) e_b, and
sends a e_b (round 3).
Why it is private: h receives nothing. a sees w_b and w_h (masked by b's and h's
zero-sharing streams, their sum by 2^f A_b + rho, uniform) or w_b alone, then e_b (masked by
s_b); b sees w_a and w_h likewise (with one receiver: neither, but c63 and d_a, functions of
c, uniform to it, and s_a), the corrections (masked by a's seed with h) and e_a (masked by
s_a). What each sees is uniform whatever the secrets (tests/test_replicated.py, per role;
tests/test_security.py). Its outputs Y_b and Y_h are functions of c and of its seeds.
Error and range: as the dealer's exact truncation: floor(z/2^f) or floor(z/2^f) + 1
(unbiased), no failure for |z| < 2^62; outside that range the result is meaningless.
Comm per element (f = 16; w bits travel as w // 8 bytes, the w mod 8 left packed):
  fused with a product, 2 rounds (fewer than ONE_RECEIVER_FROM elements): h sends 8 to a
    and 8 + 2.125 + 2 to b (20.125), a and b 8 + 2.125 each (10.125): 40.375 in all, 13.46
    a party with the roles rotating inside the call (against 8 a party for the product and
    10 for the truncation apart, in 3 rounds).
  fused, one receiver, 3 rounds: h sends 8 to a and 2.125 + 2 to b (12.125), b 8 + 2.125
    (10.125), a 8 + 0.125 (8.125): 30.375 in all, 10.125 a party.
  alone, 2 rounds: h sends b 8 + 2, a and b send 8 + 2 each: 30 in all, 10 a party.
Against SecretFlow SPU 0.9.5's ABY3 (libspu/mpc/aby3/arithmetic.cc; protocol.cc registers
TruncAPr2 by default, Guo et al., USENIX Security 2025, Algorithm 4): SPU reshares the
product (8 bytes each, 1 round), then converts to 2-out-of-2, computes the wrap bit by a
helper-assisted private multiplication in a 32-bit ring (4 bytes each, 1 round) and
reshares the result (8 bytes from each of the two, 1 round): 3 rounds and 8 + 12 = 20
bytes a party for two of them, 8 + 4 = 12 for its helper (the roles drawn per call from a
common seed, not rotated inside a call), 52 in all: its party 0 sends 12 or 20 bytes per
element depending on the draw (0.79 or 1.31 MB for a 256 x 256 matrix product). It is
exact too (one-bit error, no catastrophic failure for |x| < 2^62: hasMsbError false), so
its fewer bytes for a truncation alone (28 in all against our 30) do not come from a
probabilistic truncation. ABY3's Trunc1 (SPU's TruncA, compiled in only without
ENABLE_PRECISE_ABY3_TRUNCPR: 1 round, 8 bytes from one party) fails catastrophically with
probability about 2^(l+1-64) per element for l-bit values and is not offered here.
References: Escudero, Ghosh, Keller, Rachuri and Scholl, "Improved Primitives for MPC over
Mixed Arithmetic-Binary Circuits", CRYPTO 2020, Sec. 5 (truncation with the mask's top bit
shared; a helper among the servers); Dalskov, Escudero and Keller, "Secure Evaluation of
Quantized Neural Networks" (SecureQ8), PETS 2020 (a third server dealing for the other
two); Araki et al., CCS 2016 (resharing).
"""

from __future__ import annotations

import numpy as np

from mpc.prg import Prg, new_seed
from mpc.protocols import range_check
from mpc.protocols.replicated import kernels
from mpc.protocols.replicated.kernels import pack, packed_size, unpack
from mpc.protocols.replicated.sharing import zero_share
from mpc.ring import DTYPE

OFFSET = np.uint64(1 << 62)  # inputs are shifted by 2^62 to be non-negative
# Fused products of this many elements open to a only: 3.3 bytes per element a party less
# for one round more (on this machine a round costs about what 2^16 x 3.3 bytes do)
ONE_RECEIVER_FROM = 1 << 16
SPLIT_FROM = 1 << 10
"""Elements from which a call is cut into three ranges (every party sends the average)."""


def roles(h: int) -> tuple[int, int, int]:
    """(helper, a, b) for helper h."""
    return h, (h + 1) % 3, (h + 2) % 3


def truncate(ctx, xs: np.ndarray, bits: int) -> np.ndarray:
    """Replicated [x / 2^bits] from replicated [x] (module docstring: 2 rounds; 10 bytes a
    party per element for bits = 16)."""
    shape = xs.shape[1:]
    flat = xs.reshape(2, -1)
    out = _truncate(ctx, ctx.next_seq(), flat, flat.shape[1], bits, "trunc")
    if ctx.check:
        range_check.record(ctx, out, bits)
    return out.reshape((2,) + shape)


def truncate_product(ctx, zs: np.ndarray, bits: int, op: str = "mul") -> np.ndarray:
    """Replicated [z / 2^bits] from this party's additive part z_i of a product (z = z_0 +
    z_1 + z_2: the local terms before a reshare). For bits = 16: 2 rounds and 13.46 bytes
    a party per element, or from ONE_RECEIVER_FROM elements 3 rounds and 10.125 (module
    docstring). `op` names the product in the messages' tags, so parties running
    different products fail with a ProtocolError instead of computing garbage."""
    seq = ctx.next_seq()
    alpha = zero_share(ctx, seq, (zs.size,))
    flat = np.add(zs.reshape(-1), alpha, out=alpha)
    out = _truncate(ctx, seq, flat, zs.size, bits, op)
    if ctx.check:
        range_check.record(ctx, out, bits)
    return out.reshape((2,) + zs.shape)


def ranges(n: int, first_helper: int) -> list[tuple[int, int, int]]:
    """(start, stop, helper) of the three near-equal ranges of n elements, the helpers
    first_helper, first_helper + 1, first_helper + 2 (mod 3); empty ranges left out.
    Below SPLIT_FROM elements one range: the helper rotates from call to call instead, and
    skips the waits of its call (small calls are bound by rounds, not bytes)."""
    if n < SPLIT_FROM:
        return [(0, n, first_helper)] if n else []
    out, start = [], 0
    for j in range(3):
        stop = start + n // 3 + (1 if j < n % 3 else 0)
        if stop > start:
            out.append((start, stop, (first_helper + j) % 3))
        start = stop
    return out


def _truncate(ctx, seq: int, data: np.ndarray, n: int, bits: int, op: str) -> np.ndarray:
    """The rounds for `n` flat elements, every range at once. `data`: this party's
    masked additive part (a product's, shape (n,)) or its replicated share (op "trunc",
    shape (2, n))."""
    if not 1 <= bits <= 61:
        raise ValueError(f"truncation by {bits} bits: expected 1..61")
    if n == 0:
        return np.zeros((2, 0), DTYPE)
    product = op != "trunc"
    one = product and n >= ONE_RECEIVER_FROM
    label = f"{op}:trunc" if product else op
    first = ctx.protocol.next_helper()
    nonces = [ctx.next_seq() for _ in range(3)]  # each range's streams; round 2's, 3's labels
    out = np.empty((2, n), DTYPE)  # each range's components are written in place
    steps = []
    for (start, stop, helper), nonce in zip(ranges(n, first), nonces):
        role = (ctx.pid - helper) % 3
        if product:
            part = data[start:stop]
        else:  # a holds (x_a, x_b), b holds (x_b, x_h); the helper's part is 0
            part = (None, data[0, start:stop] + data[1, start:stop], data[1, start:stop])[role]
        steps.append((_Helper, _PartyA, _PartyB)[role](ctx, helper, nonce, part,
                                                       out[:, start:stop], bits, product,
                                                       one))
    for round_seq, rnd in ((seq, 1), (nonces[0], 2), (nonces[1], 3))[:3 if one else 2]:
        outgoing, expected = {}, {}
        for step in steps:
            for peer, arrays in step.sends(rnd).items():
                outgoing.setdefault(peer, []).extend(arrays)
            for peer, nbytes in step.expects(rnd).items():
                expected.setdefault(peer, []).append(nbytes)
        tag = label if rnd == 1 else f"{label}:{rnd}"
        messages = {p: np.concatenate([a.reshape(-1).view(np.uint8) for a in arrays])
                    for p, arrays in outgoing.items()}
        if not expected:  # the helper of a call below SPLIT_FROM elements: no wait
            for p, message in messages.items():
                ctx.transport.send(p, round_seq, tag, message)
            got = {}
        else:
            got = ctx.transport.exchange(round_seq, tag, messages, {
                p: (np.uint8, (sum(sizes),)) for p, sizes in expected.items()})
        offsets = dict.fromkeys(got, 0)
        for step in steps:
            mine = {}
            for peer, nbytes in step.expects(rnd).items():
                mine[peer] = got[peer][offsets[peer]:offsets[peer] + nbytes]
                offsets[peer] += nbytes
            step.receive(rnd, mine)
    return out


# ---------------------------------------------------------------- the three roles
def _ring(raw: np.ndarray) -> np.ndarray:
    """Received bytes as ring elements (copied if not 8-byte aligned)."""
    if raw.ctypes.data % 8:
        raw = raw.copy()
    return raw.view(DTYPE)


class _Role:
    """One range's part at this party: what it sends and expects in each round; its two
    components go to `dest` (shape (2, n)) once known."""

    def __init__(self, ctx, helper, nonce, part, dest, bits, product, one):
        self.h, self.a, self.b = roles(helper)
        self.n, self.dest = dest.shape[1], dest
        self.f, self.product, self.one = bits, product, one
        self.w = bits + 1 if product else bits
        self.fmask = np.uint64((1 << bits) - 1)
        self.wmask = np.uint64((1 << self.w) - 1)
        self.top = np.uint64(64 - self.w)  # where the w-bit pieces sit
        self.start(ctx, nonce, part)

    def sends(self, rnd: int) -> dict:
        return {}

    def expects(self, rnd: int) -> dict:
        return {}

    def receive(self, rnd: int, got: dict) -> None:
        pass

    def _open(self, w_mine, w_peer, w_h, k, m):
        """c and this party's reshare piece e (kernels.open_and_top)."""
        self.c, self.e = np.empty(self.n, DTYPE), np.empty(self.n, DTYPE)
        kernels.open_and_top(w_mine, w_peer, w_h, k, m, self.s, self.f, self.w, self.c,
                             self.e)

    def _shared(self, e_peer, out=None):
        """Y_b = pub(c) + 2^(64-w) (e + e_peer) (kernels.shared_component), into `out`."""
        out = np.empty(self.n, DTYPE) if out is None else out
        kernels.shared_component(self.c, self.e, e_peer, self.f, self.w, out)
        return out

    def _own(self, t, out):
        """This party's seed-known component T + 2^(64-w) s, into `out`."""
        with np.errstate(over="ignore"):
            np.left_shift(self.s, self.top, out=out)
            np.add(out, t, out=out)


_NONE = np.zeros(0, DTYPE)


class _Helper(_Role):
    def start(self, ctx, nonce, part):
        n = self.n
        ra, ka, ma, sa = ctx.pairwise_ring(self.a, nonce, (4, n))  # ka: T_a alone
        rb, sb = ctx.pairwise_ring(self.b, nonce, (2, n))
        m_b, comps = np.empty(n, DTYPE), self.dest  # (Y_h, Y_a)
        if self.product:
            w_h, k_b = np.empty(n, DTYPE), np.empty(n, DTYPE)
            rho = Prg(new_seed()).ring(0, n)  # private: the low bits of the mask
            kernels.helper_product(ra, rb, ka, ma, sa, sb, np.ascontiguousarray(part), rho,
                                   self.f, self.w, w_h, k_b, m_b, comps)
            self.out = {self.a: [w_h], self.b: [pack(k_b, self.w)] if self.one else
                        [w_h, pack(k_b, self.w)]}
        else:
            t_b = np.empty(n, DTYPE)
            kernels.helper_alone(ra, rb, ka, ma, sa, sb, self.f, t_b, m_b, comps)
            self.out = {self.b: [t_b]}
        self.out[self.b].append(pack(m_b, self.f))

    def sends(self, rnd):
        return self.out if rnd == 1 else {}


class _PartyA(_Role):
    def start(self, ctx, nonce, part):
        ra, ka, ma, sa = ctx.pairwise_ring(self.h, nonce, (4, self.n))  # ka: T_a alone
        self.s, self.m = sa & self.wmask, ma & self.fmask
        with np.errstate(over="ignore"):
            if self.product:  # r_a = 2^f A_a, T_a = -A_a, A_a = ra >> f
                self.t, self.k = -(ra >> np.uint64(self.f)), ka & self.wmask
                self.w_mine = part + (ra & ~self.fmask) + OFFSET
            else:
                self.t, self.k = ka, _NONE
                self.w_mine = part + ra + OFFSET

    def sends(self, rnd):
        if self.one:  # round 2: d_a and the packed c63 to b
            return {self.b: [self.d, pack(self.c >> np.uint64(63), 1)]} if rnd == 2 else {}
        return {self.b: [self.w_mine] if rnd == 1 else [pack(self.e, self.w)]}

    def expects(self, rnd):
        if rnd == 1:
            return {self.b: 8 * self.n, **({self.h: 8 * self.n} if self.product else {})}
        if rnd == (3 if self.one else 2):
            return {self.b: packed_size(self.n, self.w)}
        return {}

    def receive(self, rnd, got):
        if rnd == 1:  # (Y_a, Y_b) to dest
            w_h = _ring(got[self.h]) if self.product else _NONE
            self._open(self.w_mine, _ring(got[self.b]), w_h, self.k, self.m)
            self._own(self.t, self.dest[0])
            if self.one:  # d_a = pub(c) + 2^(64-w) e_a: Y_b less b's piece
                self.d = self._shared(np.zeros(self.n, DTYPE))
        elif self.one and rnd == 3:
            with np.errstate(over="ignore"):
                np.add(self.d, unpack(got[self.b], self.n, self.w) << self.top,
                       out=self.dest[1])
        elif rnd == 2 and not self.one:
            self._shared(unpack(got[self.b], self.n, self.w), self.dest[1])


class _PartyB(_Role):
    def start(self, ctx, nonce, part):
        rb, sb = ctx.pairwise_ring(self.h, nonce, (2, self.n))
        self.s = sb & self.wmask
        with np.errstate(over="ignore"):
            if self.product:  # r_b = 2^f A_b, T_b = -A_b
                self.t = -(rb >> np.uint64(self.f))
                self.w_mine = part + (rb & ~self.fmask)
            else:  # T_b comes from the helper
                self.w_mine = part + rb

    def _sizes(self):
        """Bytes from the helper: w_h (not with one receiver), then k_b (a product) or
        T_b (alone), then m_b."""
        n = self.n
        if self.product:
            return 0 if self.one else 8 * n, packed_size(n, self.w), packed_size(n, self.f)
        return 0, 8 * n, packed_size(n, self.f)

    def sends(self, rnd):
        if rnd == 1:
            return {self.a: [self.w_mine]}
        return {self.a: [pack(self.e, self.w)]} if rnd == (3 if self.one else 2) else {}

    def expects(self, rnd):
        if rnd == 1:
            return {self.h: sum(self._sizes()), **({} if self.one else {self.a: 8 * self.n})}
        if rnd == 2:
            return {self.a: 8 * self.n + packed_size(self.n, 1) if self.one else
                    packed_size(self.n, self.w)}
        return {}

    def receive(self, rnd, got):
        if rnd == 1:  # (Y_b, Y_h) to dest
            w_h, second, _ = self._sizes()
            raw = got[self.h]
            if self.product:
                self.w_h, self.k = _ring(raw[:w_h]), unpack(raw[w_h:w_h + second], self.n,
                                                            self.w)
            else:
                self.t, self.w_h, self.k = _ring(raw[:second]), _NONE, _NONE
            self.m = unpack(raw[sum(self._sizes()[:2]):], self.n, self.f)
            self._own(self.t, self.dest[1])
            if not self.one:
                self._open(self.w_mine, _ring(got[self.a]), self.w_h, self.k, self.m)
        elif rnd == 2 and self.one:  # d_a and c63 from a
            raw = got[self.a]
            d_a = _ring(raw[:8 * self.n])
            c63 = unpack(raw[8 * self.n:], self.n, 1)
            with np.errstate(over="ignore"):  # e_b = k_b - 2 c63 m_b - s_b mod 2^w
                self.e = (self.k - ((c63 * self.m) << np.uint64(1)) - self.s) & self.wmask
                np.add(d_a, self.e << self.top, out=self.dest[0])
        elif rnd == 2:
            self._shared(unpack(got[self.a], self.n, self.w), self.dest[0])

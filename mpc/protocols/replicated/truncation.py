"""Exact fixed-point truncation on replicated shares, one of the three parties helping the
other two, fused with a product where there is one.

Roles: for a helper h, a = h + 1 and b = h + 2 (mod 3). The elements of one call are cut
into three near-equal ranges whose helpers are k, k + 1, k + 2 (mod 3) for the protocol's
k-th truncation (ReplicatedProtocol.next_helper: every party counts the same calls), all
three in the same two rounds, the messages to each peer concatenated: so every party plays
every role on a third of the elements and sends about the average (a call of one or two
elements still rotates its helper from call to call). The helper plays a dealer for a and
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
Why it is private: h receives nothing. a sees w_b and w_h (masked by b's and h's
zero-sharing streams, their sum by 2^f A_b + rho, uniform) or w_b alone, then e_b (masked by
s_b); b sees w_a and w_h likewise, the corrections (masked by a's seed with h) and e_a
(masked by s_a). What each sees is uniform whatever the secrets (tests/test_replicated.py,
per role). Its outputs Y_b and Y_h are functions of c (uniform) and its seeds.
Error and range: as the dealer's exact truncation: floor(z/2^f) or floor(z/2^f) + 1
(unbiased), no failure for |z| < 2^62; outside that range the result is meaningless.
Rounds: 2. Comm per element (f = 16; w bits travel as w // 8 bytes plus w mod 8 bits packed):
  fused with a product: h sends 8 to a and 8 + 2.125 + 2 to b (20.125), a and b 8 + 2.125
    each (10.125): 40.375 in all, 13.46 a party with the roles rotating inside the call
    (against 8 a party for the product and 10 for the truncation apart: 3 rounds).
  alone: h sends b 8 + 2, a and b send 8 + 2 each: 30 in all, 10 a party.
Against SecretFlow SPU 0.9.5's ABY3 (libspu/mpc/aby3/arithmetic.cc; protocol.cc registers
TruncAPr2 by default, Guo et al., USENIX Security 2025, Algorithm 4): SPU reshares the
product (8 bytes each, 1 round), then converts to 2-out-of-2, computes the wrap bit by a
helper-assisted private multiplication in a 32-bit ring (4 bytes each, 1 round) and
reshares the result (8 bytes from each of the two, 1 round): 3 rounds and 8 + 12 = 20
bytes a party for two of them (8 + 4 = 12 for its helper; the roles change per call, drawn
from a common seed, not inside a call), 52 in all. It is exact too (one-bit error, no
catastrophic failure for |x| < 2^62: hasMsbError false), so its fewer bytes for a truncation
alone (28 against our 30) do not come from a probabilistic truncation; ABY3's Trunc1
(SPU's TruncA, compiled in only without ENABLE_PRECISE_ABY3_TRUNCPR) fails with probability
about 2^(l+1-64) and is not offered here.
Considered and not adopted: a one-receiver opening (b and h send to a only, a sends b c63
with its reshare piece, b answers in a third round): 8 + 4.125 + 8 + 2.125 + 8.25 = 30.5
bytes in all for a fused product, 10.2 a party, but 3 rounds.
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
    z_1 + z_2: the local terms before a reshare). 2 rounds, 13.46 bytes a party per element
    for bits = 16 (module docstring). `op` names the product in the messages' tags, so
    parties running different products fail with a ProtocolError instead of computing
    garbage."""
    seq = ctx.next_seq()
    flat = zs.reshape(-1) + zero_share(ctx, seq, (zs.size,))
    out = _truncate(ctx, seq, flat, zs.size, bits, op)
    if ctx.check:
        range_check.record(ctx, out, bits)
    return out.reshape((2,) + zs.shape)


def ranges(n: int, first_helper: int) -> list[tuple[int, int, int]]:
    """(start, stop, helper) of the three near-equal ranges of n elements, the helpers
    first_helper, first_helper + 1, first_helper + 2 (mod 3); empty ranges left out."""
    out, start = [], 0
    for j in range(3):
        stop = start + n // 3 + (1 if j < n % 3 else 0)
        if stop > start:
            out.append((start, stop, (first_helper + j) % 3))
        start = stop
    return out


def _truncate(ctx, seq: int, data: np.ndarray, n: int, bits: int, op: str) -> np.ndarray:
    """The two rounds for `n` flat elements, every range at once. `data`: this party's
    masked additive part (a product's, shape (n,)) or its replicated share (op "trunc",
    shape (2, n))."""
    if not 1 <= bits <= 61:
        raise ValueError(f"truncation by {bits} bits: expected 1..61")
    if n == 0:
        return np.zeros((2, 0), DTYPE)
    product = op != "trunc"
    label = f"{op}:trunc" if product else op
    first = ctx.protocol.next_helper()
    nonces = [ctx.next_seq() for _ in range(3)]  # streams of each range; [0] labels round 2
    steps = []
    for (start, stop, helper), nonce in zip(ranges(n, first), nonces):
        role = (ctx.pid - helper) % 3
        if product:
            part = data[start:stop]
        else:  # a holds (x_a, x_b), b holds (x_b, x_h); the helper's part is 0
            part = (None, data[0, start:stop] + data[1, start:stop], data[1, start:stop])[role]
        steps.append((_Helper, _PartyA, _PartyB)[role](ctx, helper, nonce, part, stop - start,
                                                       bits, product))
    for round_seq, rnd in ((seq, 1), (nonces[0], 2)):
        outgoing, expected = {}, {}
        for step in steps:
            for peer, arrays in step.sends(rnd).items():
                outgoing.setdefault(peer, []).extend(arrays)
            for peer, nbytes in step.expects(rnd).items():
                expected.setdefault(peer, []).append(nbytes)
        tag = label if rnd == 1 else f"{label}:2"
        messages = {p: np.concatenate([a.reshape(-1).view(np.uint8) for a in arrays])
                    for p, arrays in outgoing.items()}
        if not expected:  # the helper of every range (a call of one element): no wait
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
    return np.concatenate([step.result() for step in steps], axis=1)


# ---------------------------------------------------------------- the three roles
def _ring(raw: np.ndarray) -> np.ndarray:
    """Received bytes as ring elements (copied if not 8-byte aligned)."""
    if raw.ctypes.data % 8:
        raw = raw.copy()
    return raw.view(DTYPE)


class _Role:
    """One range's part at this party: what it sends and expects in each round."""

    def __init__(self, ctx, helper, nonce, part, n, bits, product):
        self.h, self.a, self.b = roles(helper)
        self.n, self.f, self.product = n, bits, product
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

    def _shared(self, raw):
        """Y_b from c, this party's piece and the peer's (raw bytes)."""
        out = np.empty(self.n, DTYPE)
        kernels.shared_component(self.c, self.e, unpack(raw, self.n, self.w), self.f,
                                 self.w, out)
        return out

    def _own(self, t):
        """This party's seed-known component T + 2^(64-w) s."""
        with np.errstate(over="ignore"):
            return t + (self.s << self.top)


_NONE = np.zeros(0, DTYPE)


class _Helper(_Role):
    def start(self, ctx, nonce, part):
        n = self.n
        ra, ka, ma, sa = ctx.pairwise_ring(self.a, nonce, (4, n))  # ka: T_a alone
        rb, sb = ctx.pairwise_ring(self.b, nonce, (2, n))
        m_b, self.comps = np.empty(n, DTYPE), np.empty((2, n), DTYPE)  # (Y_h, Y_a)
        if self.product:
            w_h, k_b = np.empty(n, DTYPE), np.empty(n, DTYPE)
            rho = Prg(new_seed()).ring(0, n)  # private: the low bits of the mask
            kernels.helper_product(ra, rb, ka, ma, sa, sb, np.ascontiguousarray(part), rho,
                                   self.f, self.w, w_h, k_b, m_b, self.comps)
            self.out = {self.a: [w_h], self.b: [w_h, pack(k_b, self.w)]}
        else:
            t_b = np.empty(n, DTYPE)
            kernels.helper_alone(ra, rb, ka, ma, sa, sb, self.f, t_b, m_b, self.comps)
            self.out = {self.b: [t_b]}
        self.out[self.b].append(pack(m_b, self.f))

    def sends(self, rnd):
        return self.out if rnd == 1 else {}

    def result(self):
        return self.comps


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
        return {self.b: [self.w_mine] if rnd == 1 else [pack(self.e, self.w)]}

    def expects(self, rnd):
        if rnd == 2:
            return {self.b: packed_size(self.n, self.w)}
        return {self.b: 8 * self.n, **({self.h: 8 * self.n} if self.product else {})}

    def receive(self, rnd, got):
        if rnd == 1:
            w_h = _ring(got[self.h]) if self.product else _NONE
            self._open(self.w_mine, _ring(got[self.b]), w_h, self.k, self.m)
        else:
            self.y_b = self._shared(got[self.b])

    def result(self):
        return np.stack([self._own(self.t), self.y_b])  # (Y_a, Y_b)


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
        """Bytes from the helper: w_h, then k_b (a product) or T_b (alone), then m_b."""
        n = self.n
        if self.product:
            return 8 * n, packed_size(n, self.w), packed_size(n, self.f)
        return 0, 8 * n, packed_size(n, self.f)

    def sends(self, rnd):
        return {self.a: [self.w_mine] if rnd == 1 else [pack(self.e, self.w)]}

    def expects(self, rnd):
        if rnd == 2:
            return {self.a: packed_size(self.n, self.w)}
        return {self.a: 8 * self.n, self.h: sum(self._sizes())}

    def receive(self, rnd, got):
        if rnd == 2:
            self.y_b = self._shared(got[self.a])
            return
        w_h, second, _ = self._sizes()
        raw = got[self.h]
        if self.product:
            w_h, k = _ring(raw[:w_h]), unpack(raw[w_h:w_h + second], self.n, self.w)
        else:
            self.t, w_h, k = _ring(raw[:second]), _NONE, _NONE
        m = unpack(raw[sum(self._sizes()[:2]):], self.n, self.f)
        self._open(self.w_mine, _ring(got[self.a]), w_h, k, m)

    def result(self):
        return np.stack([self.y_b, self._own(self.t)])  # (Y_b, Y_h)

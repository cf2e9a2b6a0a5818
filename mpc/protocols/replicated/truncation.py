"""Exact fixed-point truncation on replicated shares, one of the three parties helping the
other two (the role rotates), fused with a product where there is one.

Roles: the helper h = k mod 3 for the protocol's k-th truncation (every party counts the
same calls: ReplicatedProtocol.next_helper), a = h + 1 and b = h + 2 (mod 3). The helper
plays the dealer of mpc.protocols.dealer.truncation for a and b, seed-compressed, and never
receives anything, so its view is empty.

Protocol truncate([z], bits = f), z given as additive parts z = z_h + z_a + z_b (a product's
local terms, or the replicated shares of x regrouped: z_h = 0, z_a = x_a + x_b, z_b = x_h):
  1. h draws r = r_a + r_b with r_a from its seed with a and r_b from its seed with b, and
     with m = r >> 63 and t = 2^(63-f) m - ((r mod 2^63) >> f) it derives a's shares t_a,
     m_a from its seed with a and sends b the rest, t_b = t - t_a and m_b = m - m_a mod 2^f.
  2. With a zero-sharing alpha (only for a product: alpha_h + alpha_a + alpha_b = 0), a
     sends w_a = z_a + alpha_a + r_a + 2^62 to b, b sends w_b = z_b + alpha_b + r_b to a,
     and h sends w_h = z_h + alpha_h to both; a and b get c = w_a + w_b + w_h = z + 2^62 + r,
     uniform, so it shows them nothing. (Steps 1 and 2 are one round: h's messages do not
     depend on anything it receives.)
  3. a and b finish as the dealer's exact truncation does (mpc.kernels.trunc_finish):
     y_a + y_b = floor(z / 2^f) or that plus one, additively between a and b.
  4. Reshare y as replicated: its components y_h and y_a come from h's seeds with b and
     with a; a sends y_a - (its y_a component) to b, b sends y_b - y_h to a, and both hold
     the third component, the sum of the two.
Error and range: as the dealer's exact truncation: floor(z/2^f) or floor(z/2^f) + 1
(unbiased), no failure for |z| < 2^62; outside that range the result is meaningless.
Rounds: 2. Comm per element, by role: h sends b 8 + ceil(f/8) bytes (t_b, m_b) and, for a
product, 8 bytes to each of a and b; a and b send each other 16 bytes (w and the reshare).
For f = 16: 16 + 16 + 10 = 42 bytes in all for a truncation alone (14 a party on average),
42 + 16 = 58 for a product fused with its truncation (19.3 a party), against 8 a party for
the product and 14 for the truncation apart (3 rounds).
References: Escudero, Ghosh, Keller, Rachuri and Scholl, "Improved Primitives for MPC over
Mixed Arithmetic-Binary Circuits", CRYPTO 2020, Sec. 5 (truncation with the mask's top bit
shared; a helper among the servers), as SPU's TruncAPr; Dalskov, Escudero and Keller,
"Secure Evaluation of Quantized Neural Networks" (SecureQ8), PETS 2020 (a third server
dealing for the other two); Araki et al., CCS 2016 (resharing).
"""

from __future__ import annotations

import numpy as np

from mpc import kernels
from mpc.protocols import range_check
from mpc.protocols.replicated.sharing import zero_share
from mpc.ring import DTYPE

OFFSET = np.uint64(1 << 62)  # inputs are shifted by 2^62 to be non-negative
LOW63 = np.uint64((1 << 63) - 1)
TOP = np.uint64(63)


def roles(h: int) -> tuple[int, int, int]:
    """(helper, a, b) for helper h."""
    return h, (h + 1) % 3, (h + 2) % 3


def _m_dtype(bits: int) -> np.dtype:
    """The narrowest unsigned dtype for m modulo 2^bits (b's correction)."""
    return np.dtype(np.uint8 if bits <= 8 else np.uint16 if bits <= 16
                    else np.uint32 if bits <= 32 else np.uint64)


def truncate(ctx, xs: np.ndarray, bits: int) -> np.ndarray:
    """Replicated [x / 2^bits] from replicated [x] (module docstring; rounds 2)."""
    shape = xs.shape[1:]
    flat = xs.reshape(2, -1)
    seq = ctx.next_seq()
    h, a, _ = roles(ctx.protocol.next_helper())
    if ctx.pid == h:
        part = None
    elif ctx.pid == a:  # holds (x_a, x_b)
        part = flat[0] + flat[1]
    else:  # b holds (x_b, x_h)
        part = flat[1].copy()
    out = _truncate_parts(ctx, seq, h, part, flat.shape[1], bits, "trunc")
    if ctx.check:
        range_check.record(ctx, out, bits)
    return out.reshape((2,) + shape)


def truncate_product(ctx, zs: np.ndarray, bits: int, op: str = "mul") -> np.ndarray:
    """Replicated [z / 2^bits] from this party's additive part z_i of a product (z = z_0 +
    z_1 + z_2: the local terms before a reshare). Rounds: 2 (module docstring). `op` names
    the product in the messages' tags, so parties running different products fail with a
    ProtocolError instead of computing garbage."""
    shape = zs.shape
    seq = ctx.next_seq()
    flat = zs.reshape(-1) + zero_share(ctx, seq, (zs.size,))
    h = ctx.protocol.next_helper()
    out = _truncate_parts(ctx, seq, h, flat, zs.size, bits, op)
    if ctx.check:
        range_check.record(ctx, out, bits)
    return out.reshape((2,) + shape)


def _truncate_parts(ctx, seq: int, helper: int, part, n: int, bits: int,
                    op: str) -> np.ndarray:
    """Steps 1-4 of the module docstring for `n` flat elements; `part` is this party's
    (masked, for a product) additive part, None for the helper of a plain truncation
    (op "trunc"; any other op is a product's)."""
    product, label = op != "trunc", op if op == "trunc" else f"{op}:trunc"
    if not 1 <= bits <= 61:
        raise ValueError(f"truncation by {bits} bits: expected 1..61")
    h, a, b = roles(helper)
    me = ctx.pid
    mdt = _m_dtype(bits)
    m_bytes = n * mdt.itemsize
    nonce = ctx.next_seq()  # the second round's label and the helper's streams
    if me == h:
        r_a, t_a, m_a, y_a = ctx.pairwise_ring(a, nonce, (4, n))
        r_b, y_h = ctx.pairwise_ring(b, nonce, (2, n))
        r = r_a + r_b
        m = r >> TOP
        t = m * np.uint64(1 << (63 - bits)) - ((r & LOW63) >> np.uint64(bits))
        correction = np.concatenate([(t - t_a).view(np.uint8),
                                     (m - m_a).astype(mdt).view(np.uint8)])
        if product:  # the helper waits for nothing: no round of its own
            w_h = np.asarray(part, dtype=DTYPE, order="C")
            ctx.transport.send(a, seq, label, w_h)
            correction = np.concatenate([w_h.view(np.uint8), correction])
        ctx.transport.send(b, seq, label, correction)
        return np.stack([y_h, y_a])
    peer = b if me == a else a
    if me == a:
        r_mine, t_mine, m_mine, y_from_seed = ctx.pairwise_ring(h, nonce, (4, n))
        m_mine = m_mine & np.uint64((1 << bits) - 1)
        w = part + r_mine + OFFSET
    else:
        r_mine, y_from_seed = ctx.pairwise_ring(h, nonce, (2, n))
        w = part + r_mine
    w = np.asarray(w, dtype=DTYPE, order="C")
    expect = {peer: (DTYPE, (n,))}
    if me == b:
        helper_bytes = (8 * n if product else 0) + 8 * n + m_bytes
        expect[h] = (np.uint8, (helper_bytes,))
    elif product:
        expect[h] = (DTYPE, (n,))
    got = ctx.transport.exchange(seq, label, {peer: w}, expect)
    c = w + got[peer]
    if me == b:
        raw = got[h]
        offset = 0
        if product:
            c += raw[:8 * n].view(DTYPE)
            offset = 8 * n
        t_mine = raw[offset:offset + 8 * n].view(DTYPE)
        m_mine = raw[offset + 8 * n:].view(mdt).astype(DTYPE)
    elif product:
        c += got[h]
    y = kernels.trunc_finish(c, np.ascontiguousarray(t_mine), np.ascontiguousarray(m_mine),
                             bits, me == a)
    sent = np.ascontiguousarray(y - y_from_seed)
    other = ctx.transport.exchange(nonce, label + ":reshare", {peer: sent},
                                   {peer: (DTYPE, (n,))})[peer]
    shared = sent + other
    # a holds (y_a, y_b), b holds (y_b, y_h); y_a and y_h are the seed-derived ones
    return np.stack([y_from_seed, shared]) if me == a else np.stack([shared, y_from_seed])

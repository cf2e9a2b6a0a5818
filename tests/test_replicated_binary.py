"""The replicated protocol's binary layer (mpc.protocols.replicated.binary): bit-slicing,
the one-hot comparison leaves against their definitions and their numba kernels against
the numpy references, and the helper-dealt ANDs against plain numpy, in one round."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import mpc
from mpc.protocols.replicated import binary

LOW63 = (1 << 63) - 1


@given(rows=st.integers(1, 5), m=st.integers(1, 200), seed=st.integers(0, 2**32))
def test_pack_unpack_round_trip(rows, m, seed):
    bits = np.random.default_rng(seed).integers(0, 2, (rows, m), dtype=np.uint8)
    packed = binary.pack(bits)
    assert packed.dtype == np.uint64 and packed.shape == (rows, binary.words(m))
    np.testing.assert_array_equal(binary.unpack(packed, m), bits)
    for k in (0, m - 1):  # element k is bit k % 64 of word k // 64
        assert (packed[0, k // 64] >> np.uint64(k % 64)) & np.uint64(1) == bits[0, k]


def test_parity16():
    x = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    want = np.array([bin(v).count("1") % 2 for v in range(2**16)], dtype=np.uint16)
    np.testing.assert_array_equal(binary.parity16(x), want)


def _values(seed, m):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**63, m, dtype=np.uint64)
    values[: min(m, 4)] = np.array([0, LOW63, 15, 1 << 62], dtype=np.uint64)[: min(m, 4)]
    return values


@given(m=st.integers(1, 300), xor=st.booleans(), seed=st.integers(0, 2**32))
def test_leaves_are_group_comparisons(m, xor, seed):
    """XOR shares of the one-hot groups of v give XOR shares of [v_g ^ w_g > t_g] and
    [v_g ^ w_g == t_g] (w = 0: of [v_g > t_g] and [v_g == t_g])."""
    rng = np.random.default_rng(seed)
    v, t = _values(seed, m), _values(seed + 1, m)
    w = _values(seed + 2, m) if xor else None
    u = v ^ w if xor else v
    t[: m // 2] = u[: m // 2] ^ (np.uint64(1) << rng.integers(0, 63, m // 2).astype(np.uint64))
    mask = rng.integers(0, 2**16, (m, 16)).astype(np.uint16)
    masked = binary.group_onehot(v, mask)
    np.testing.assert_array_equal(masked, binary.group_onehot_reference(v, mask))
    onehot = masked ^ mask
    assert np.all(onehot & (onehot - np.uint16(1)) == 0) and np.all(onehot != 0)
    shares = [binary.compare_leaves(mask, t, w), binary.compare_leaves(masked, t, w)]
    for share in shares[0] + shares[1]:
        assert share.dtype == np.uint64
    reference = binary.compare_leaves_reference(mask, t, w if xor else np.zeros_like(t))
    for mine, ref in zip(shares[0], reference):
        np.testing.assert_array_equal(mine, ref)
    lt = binary.unpack(shares[0][0] ^ shares[1][0], m)
    eq = binary.unpack(shares[0][1] ^ shares[1][1], m)
    shifts = np.arange(0, 64, 4, dtype=np.uint64)[:, None]
    ug, tg = (u >> shifts) & np.uint64(15), (t >> shifts) & np.uint64(15)
    np.testing.assert_array_equal(lt, (ug > tg).astype(np.uint8))
    np.testing.assert_array_equal(eq, (ug == tg).astype(np.uint8))


@given(m=st.integers(1, 100), seed=st.integers(0, 2**32))
def test_bit_injection_kernels(m, seed):
    """With additive shares of a bit b and the public e, the two parties' inject results
    add up to e ^ b (and x (e ^ b)) less the masks; kernels equal their references."""
    rng = np.random.default_rng(seed)
    ring = lambda: rng.integers(0, 2**64, m, dtype=np.uint64)  # noqa: E731
    e, b = rng.integers(0, 2, m, dtype=np.uint8), rng.integers(0, 2, m).astype(np.uint64)
    x, x_b, rho, masks = ring(), ring(), ring(), [ring(), ring()]
    beta = [ring()]
    beta.append(b - beta[0])
    x_e = [ring()]
    x_e.append(x - x_e[0])
    bits = [binary.inject(e, beta[k], masks[k], k == 0) for k in range(2)]
    for k in range(2):
        np.testing.assert_array_equal(bits[k], binary.inject_reference(e, beta[k], masks[k],
                                                                       k == 0))
    np.testing.assert_array_equal(bits[0] + bits[1] + masks[0] + masks[1],
                                  e.astype(np.uint64) ^ b)
    # x b = x_b (beta_0 + beta_1) + (x - x_b) b: the rest enters as +rho / -rho + (x - x_b) b
    rhos = [rho, (x - x_b) * b - rho]
    products = [binary.inject_product(e, beta[k], rhos[k], x_b, x_e[k], masks[k])
                for k in range(2)]
    for k in range(2):
        np.testing.assert_array_equal(products[k], binary.inject_product_reference(
            e, beta[k], rhos[k], x_b, x_e[k], masks[k]))
    np.testing.assert_array_equal(products[0] + products[1] + masks[0] + masks[1],
                                  x * (e.astype(np.uint64) ^ b))


def _and(ctx, x, ys, seed, out):
    """Parties 0 and 1 hold XOR shares of x and ys; party 2 deals the triples from the
    seeds it shares with each (as the comparison does)."""
    rows, width = x.shape
    nonce = ctx.next_seq()
    seq = ctx.next_seq()
    k = len(ys)
    if ctx.pid == 2:
        ra = ctx.pairwise_ring(0, nonce, (1 + 2 * k, rows, width))
        rb = ctx.pairwise_ring(1, nonce, (1 + k, rows, width))
        cs = [binary.deal_and(ra[0], rb[0], ra[1 + j], rb[1 + j], ra[1 + k + j]) for j in range(k)]
        ctx.transport.send(1, seq, "triples", np.stack(cs))
        return None
    peer = 1 - ctx.pid
    rng = np.random.default_rng(seed)
    masks = [rng.integers(0, 2**64, x.shape, dtype=np.uint64) for _ in range(1 + k)]
    mine = [v ^ mk if ctx.pid == 0 else mk for v, mk in zip([x] + ys, masks)]
    r = ctx.pairwise_ring(2, nonce, ((1 + 2 * k) if ctx.pid == 0 else (1 + k), rows, width))
    cs = list(r[1 + k:]) if ctx.pid == 0 else list(
        ctx.transport.recv(2, seq, "triples", np.uint64, (k, rows, width)))
    seq2 = ctx.next_seq()
    before = ctx.stats.snapshot()
    opened = binary.and_open(mine[0], mine[1:], r[0], list(r[1:1 + k]))
    opened ^= ctx.transport.exchange(seq2, "and", {peer: opened},
                                     {peer: (np.uint64, opened.shape)})[peer]
    got = binary.and_finish(opened, ctx.pid == 0, r[0], list(r[1:1 + k]), cs)
    after = ctx.stats.snapshot()
    out[ctx.pid] = (after.rounds - before.rounds, after.bytes_sent - before.bytes_sent)
    return got


@given(rows=st.integers(1, 4), width=st.integers(1, 3), k=st.integers(1, 2),
       seed=st.integers(0, 2**32))
def test_and_with_dealt_triples(rows, width, k, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2**64, (rows, width), dtype=np.uint64)
    ys = [rng.integers(0, 2**64, (rows, width), dtype=np.uint64) for _ in range(k)]
    costs = {}
    res = mpc.run_local(_and, 3, args=(x, ys, seed, costs))
    for j in range(k):
        np.testing.assert_array_equal(res[0][j] ^ res[1][j], x & ys[j])
    assert costs[0] == costs[1] == (1, (1 + k) * rows * width * 8)

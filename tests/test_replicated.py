"""The replicated protocol's own contract: its exact truncation (alone and fused with a
product) at the edges of its range, with the helper role rotating; the rounds and bytes of
every step by role, from the transport's counters; what each party receives (the helper
nothing); and the settings it refuses.

Test inputs are split here into replicated shares (party i holds (x_i, x_{i+1})), apart
from the protocol's own input step.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mpc
from mpc.protocols.replicated import sharing, truncation
from mpc.ring import DTYPE

F = 16
LIMIT = 2 ** 62 - 1
EDGES = [0, 1, -1, LIMIT, -LIMIT, 2 ** 61, -2 ** 61, 2 ** 16 - 1, -2 ** 16, 2 ** 16 + 1]
N = 1000


def components(x: np.ndarray, rng) -> list[np.ndarray]:
    """x = c_0 + c_1 + c_2 with c_0, c_1 uniform (int64 values as ring elements)."""
    c0, c1 = (rng.integers(0, 2**64, x.shape, dtype=np.uint64, endpoint=False) for _ in "ab")
    return [c0, c1, x.astype(np.int64).view(DTYPE) - c0 - c1]


def replicated(x, rng):
    c = components(x, rng)
    return [np.stack([c[i], c[(i + 1) % 3]]) for i in range(3)]


def _truncate_three_times(ctx, shares, parts, bits):
    """Plain truncation and the fused product truncation, each three times (each party
    helps once); every result opened. Also who received nothing in each call."""
    out, idle = [], []
    for _ in range(3):
        before = ctx.stats.snapshot()
        ys = truncation.truncate(ctx, shares[ctx.pid], bits)
        idle.append(ctx.stats.snapshot().bytes_received == before.bytes_received)
        out.append(ctx.open(ys).view(np.int64))
        before = ctx.stats.snapshot()
        zs = truncation.truncate_product(ctx, parts[ctx.pid], bits)
        idle.append(ctx.stats.snapshot().bytes_received == before.bytes_received)
        out.append(ctx.open(zs).view(np.int64))
    return out, idle


def run_truncations(x, bits=F, seed=0):
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.int64)
    results = mpc.run_local(_truncate_three_times, 3, protocol="replicated", check=False,
                            args=(replicated(x, rng), components(x, rng), bits))
    idle = np.array([r[1] for r in results])  # [party, call]
    return results[0][0], idle


@given(st.lists(st.integers(-LIMIT, LIMIT), min_size=1, max_size=40))
def test_truncation_within_one_ulp_for_every_helper(values):
    x = np.array(values + EDGES, dtype=np.int64)
    outs, idle = run_truncations(x)
    for y in outs:
        assert set(np.unique(y - (x >> F))) <= {0, 1}
    # one party received nothing in each call (the helper), each party in turn
    assert np.all(idle.sum(axis=0) == 1)
    assert set(np.argmax(idle, axis=0)) == {0, 1, 2}


@pytest.mark.parametrize("bits", [1, 8, 24, 30, 61])
def test_truncation_by_other_widths(bits):
    x = np.array(EDGES + list(np.random.default_rng(bits).integers(-LIMIT, LIMIT, 200)))
    for y in run_truncations(x, bits)[0]:
        assert set(np.unique(y - (x >> bits))) <= {0, 1}


def test_truncation_is_unbiased():
    x = np.full(100_000, 12345 * 2**16 + 2**14, dtype=np.int64)  # frac part 1/4
    for y in run_truncations(x)[0]:
        assert abs(np.mean(y - x / 2.0**F)) < 0.01  # E[y] = x / 2^f


def _costs(ctx, n):
    x = mpc.share(ctx, np.ones(n) if ctx.pid == 0 else None, 0, shape=(n,))
    y = mpc.share(ctx, np.ones(n) if ctx.pid == 1 else None, 1, shape=(n,))
    a = mpc.share(ctx, np.ones((10, 50)) if ctx.pid == 0 else None, 0, shape=(10, 50))
    b = mpc.share(ctx, np.ones((50, n // 10)) if ctx.pid == 1 else None, 1, shape=(50, n // 10))
    img = mpc.share(ctx, np.ones((1, 3, 12, 12)) if ctx.pid == 0 else None, 0,
                    shape=(1, 3, 12, 12))
    ker = mpc.share(ctx, np.ones((10, 3, 3, 3)) if ctx.pid == 1 else None, 1,
                    shape=(10, 3, 3, 3))
    bit = ctx.protocol.public(ctx, np.ones(n, dtype=DTYPE))
    ops = {"input": lambda: mpc.share(ctx, np.ones(n) if ctx.pid == 2 else None, 2, shape=(n,)),
           "mul": lambda: x * y, "square": lambda: x.square(), "matmul": lambda: a @ b,
           "conv2d": lambda: img.conv2d(ker),  # 10 x 10 x 10 = n outputs
           "mul_public": lambda: x * 0.5, "mul_bit": lambda: ctx.protocol.product(
               ctx, "mul", x.share, bit, None, None),
           "reveal": lambda: x.reveal(), "reveal_to": lambda: x.reveal_to(1)}
    counts = {}
    for name, op in ops.items():
        before = ctx.stats.snapshot()
        op()
        after = ctx.stats.snapshot()
        counts[name] = (after.bytes_sent - before.bytes_sent, after.rounds - before.rounds)
    return counts


def test_rounds_and_bytes_by_role_match_the_docstrings():
    """Bytes sent and rounds (blocking waits) of each party, sorted by bytes: the roles of
    mpc.protocols.replicated (helper 26 bytes and no wait in a fused product, the other
    two 16 bytes and 2 rounds; the inner dimension of a matrix product free)."""
    counts = mpc.run_local(_costs, 3, args=(N,), protocol="replicated", check=False)

    def by_role(name):
        return sorted(c[name] for c in counts)
    fused = [(16 * N, 2), (16 * N, 2), (26 * N, 0)]
    # input: share's agreement (one round, 8 bytes a word to each peer: [-1] held, (N,)
    # declared and (owner,) by a non-owner, (N,), (N,), (owner,) by the owner), then the
    # components
    assert by_role("input") == [(80, 2), (80, 2), (16 * N + 96, 1)]
    assert by_role("mul") == by_role("square") == by_role("matmul") == by_role("conv2d") == fused
    assert by_role("mul_public") == [(10 * N, 0), (16 * N, 2), (16 * N, 2)]
    assert by_role("mul_bit") == [(8 * N, 1)] * 3
    assert by_role("reveal") == [(8 * N, 1)] * 3
    assert sorted(c["reveal_to"] for c in counts) == [(0, 0), (0, 1), (8 * N, 0)]
    assert counts[1]["reveal_to"] == (0, 1)  # the receiver waits, its predecessor sends


def _recorded_views(ctx, secret, op):
    """Every ring element this party receives during `op` (after the inputs)."""
    x = mpc.share(ctx, secret if ctx.pid == 0 else None, 0, shape=secret.shape)
    y = mpc.share(ctx, np.full(secret.shape, 1.5) if ctx.pid == 1 else None, 1,
                  shape=secret.shape)
    seen, original = [], ctx.transport._wait

    def recording(frm, seq):
        got_op, array = original(frm, seq)
        seen.append(array.view(np.uint8).reshape(-1).copy())
        return got_op, array
    ctx.transport._wait = recording
    op(x, y)
    return np.concatenate(seen) if seen else np.zeros(0, np.uint8)


def _bit_frequencies(raw: np.ndarray) -> np.ndarray:
    return np.unpackbits(raw.reshape(-1, 1), axis=1).mean(axis=0)


@pytest.mark.parametrize("op", ["mul", "truncation", "matmul"])
def test_each_partys_view_is_independent_of_the_secret(op):
    """Per party (whatever its role), the received bytes have every bit set half the time,
    for a zero secret and a large one alike; the helper of a call receives nothing."""
    ops = {"mul": lambda x, y: x * y, "truncation": lambda x, y: x * 0.37,
           "matmul": lambda x, y: x.reshape(40, 500) @ y.reshape(500, 40)}
    small, large = np.zeros(20_000), np.random.default_rng(0).uniform(-1000, 1000, 20_000)
    views = [mpc.run_local(_recorded_views, 3, args=(s, ops[op]), protocol="replicated")
             for s in (small, large)]
    sizes = [[v.size for v in run] for run in views]
    assert sizes[0] == sizes[1] and sorted(sizes[0])[0] == 0  # the helper's view is empty
    for pid in range(3):
        a, b = views[0][pid], views[1][pid]
        if a.size == 0:
            continue
        fa, fb = _bit_frequencies(a), _bit_frequencies(b)
        sigma = np.sqrt(0.25 / a.size)
        assert np.all(np.abs(fa - 0.5) < 6 * sigma), f"party {pid}: a received bit is biased"
        assert np.all(np.abs(fa - fb) < 6 * sigma), f"party {pid}: view depends on the secret"


def test_input_components_are_seed_derived_and_consistent():
    """Every party's two components agree with its neighbours' (a replicated sharing), the
    owner's value is their sum, and a non-owner's seed-derived component is uniform."""
    def shares(ctx):
        x = mpc.share(ctx, np.arange(5.0) if ctx.pid == 1 else None, 1, shape=(5,))
        noisy = ctx.protocol.add_private(ctx, x.share, np.full(5, ctx.pid + 1, dtype=DTYPE))
        return x.share, noisy
    out = mpc.run_local(shares, 3, protocol="replicated")
    for k in (0, 1):
        got = [o[k] for o in out]
        for i in range(3):
            np.testing.assert_array_equal(got[i][1], got[(i + 1) % 3][0])
        total = got[0][0] + got[1][0] + got[2][0]
        want = mpc.FixedPoint().encode(np.arange(5.0)) + np.uint64(6 if k else 0)
        np.testing.assert_array_equal(total, want)


def test_zero_sharing_sums_to_zero_and_reshare_replicates():
    def run(ctx):
        alpha = sharing.zero_share(ctx, 12345, (100,))
        z = sharing.reshare(ctx, np.full(100, ctx.pid + 1, dtype=DTYPE), "test")
        return alpha, z
    out = mpc.run_local(run, 3, protocol="replicated")
    np.testing.assert_array_equal(sum(o[0] for o in out), np.zeros(100, DTYPE))
    z = [o[1] for o in out]
    for i in range(3):
        np.testing.assert_array_equal(z[i][1], z[(i + 1) % 3][0])
    np.testing.assert_array_equal(z[0][0] + z[1][0] + z[2][0], np.full(100, 6, DTYPE))


@pytest.mark.parametrize("n", [2, 4])
def test_refuses_other_party_counts(n):
    """Before any party starts (run_local checks first; the Context checks again)."""
    with pytest.raises(ValueError, match="exactly 3 parties, not"):
        mpc.run_local(lambda ctx: None, n, protocol="replicated", timeout=5)


def test_refuses_local_probabilistic_truncation():
    with pytest.raises(ValueError, match="only the exact truncation"):
        mpc.run_local(lambda ctx: None, 3, protocol="replicated",
                      truncation="local-probabilistic", timeout=5)

"""The replicated protocol's own contract: its exact truncation (alone and fused with a
product) at the edges of its range, with the helper role rotating inside a call and from
call to call; the rounds and bytes of every step per party, from the transport's counters;
what each party receives (a helper nothing); the wire format of the packed corrections;
input sharing with the common seed; and the settings it refuses.

Test inputs are split here into replicated shares (party i holds (x_i, x_{i+1})), apart
from the protocol's own input step.
"""

from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mpc
from mpc.protocols.replicated import kernels, sharing, truncation
from mpc.ring import DTYPE

F = 16
LIMIT = 2 ** 62 - 1
EDGES = [0, 1, -1, LIMIT, -LIMIT, 2 ** 61, -2 ** 61, 2 ** 16 - 1, -2 ** 16, 2 ** 16 + 1]
N = 1200  # a multiple of 24: three ranges of whole bytes of packed bits


def components(x: np.ndarray, rng) -> list[np.ndarray]:
    """x = c_0 + c_1 + c_2 with c_0, c_1 uniform (int64 values as ring elements)."""
    c0, c1 = (rng.integers(0, 2**64, x.shape, dtype=np.uint64, endpoint=False) for _ in "ab")
    return [c0, c1, x.astype(np.int64).view(DTYPE) - c0 - c1]


def replicated(x, rng):
    c = components(x, rng)
    return [np.stack([c[i], c[(i + 1) % 3]]) for i in range(3)]


def _truncate_three_times(ctx, shares, parts, bits):
    """Plain truncation and the fused product truncation, each three times (the first
    helper rotating); every result opened. Also who received nothing in each call."""
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


ONE_RECEIVER = [truncation.ONE_RECEIVER_FROM, 1]  # the fused product's two variants


def run_truncations(x, bits=F, seed=0, one_receiver_from=truncation.ONE_RECEIVER_FROM,
                    split_from=1):
    """split_from=1 by default: small inputs exercise the three ranges (the protocol splits
    from truncation.SPLIT_FROM elements)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.int64)
    # check=False: at the very top of the range (LIMIT) checked mode reports the last unit
    with mock.patch.object(truncation, "ONE_RECEIVER_FROM", one_receiver_from), \
            mock.patch.object(truncation, "SPLIT_FROM", split_from):
        results = mpc.run_local(_truncate_three_times, 3, protocol="replicated", check=False,
                                args=(replicated(x, rng), components(x, rng), bits))
    idle = np.array([r[1] for r in results])  # [party, call]
    return results[0][0], idle


@pytest.mark.parametrize("split_from", [1, truncation.SPLIT_FROM])
@pytest.mark.parametrize("one_receiver_from", ONE_RECEIVER)
@given(st.lists(st.integers(-LIMIT, LIMIT), min_size=0, max_size=40))
def test_truncation_within_one_ulp_for_every_helper(one_receiver_from, split_from, values):
    """Every size: the three ranges (some empty) with their own helpers, or one range (a
    small call) with the call's helper."""
    x = np.array(values + EDGES[:len(values) % len(EDGES)], dtype=np.int64)
    outs, _ = run_truncations(x, one_receiver_from=one_receiver_from, split_from=split_from)
    for y in outs:
        assert set(np.unique(y - (x >> F))) <= {0, 1}


@pytest.mark.parametrize("one_receiver_from", ONE_RECEIVER)
@given(st.integers(2 ** 62 - 2 ** 20, LIMIT), st.sampled_from([1, -1]), st.integers(0, 5))
def test_truncation_at_the_edges_of_the_range(one_receiver_from, magnitude, sign, extra):
    """|x| next to 2^62, the largest value the contract covers, among ordinary ones."""
    x = np.array([sign * magnitude, -sign * magnitude] + [1, -1, 0][:extra % 4] * 3,
                 dtype=np.int64)
    for y in run_truncations(x, seed=extra, one_receiver_from=one_receiver_from)[0]:
        assert set(np.unique(y - (x >> F))) <= {0, 1}


def test_a_small_call_rotates_its_helper_who_receives_nothing():
    for x in (np.array([LIMIT]), np.arange(-3, 3) * 2**40):
        outs, idle = run_truncations(x, split_from=truncation.SPLIT_FROM)
        assert np.all(idle.sum(axis=0) == 1)  # one party (the helper) idle in each call
        assert set(np.argmax(idle, axis=0)) == {0, 1, 2}  # each party in turn
        for y in outs:
            assert set(np.unique(y - (x >> F))) <= {0, 1}
    _, idle = run_truncations(np.arange(-3, 3) * 2**40, split_from=6)
    assert not idle.any()  # split: every party plays every role in every call


@pytest.mark.parametrize("one_receiver_from", ONE_RECEIVER)
@pytest.mark.parametrize("bits", [1, 7, 8, 24, 30, 61])
def test_truncation_by_other_widths(bits, one_receiver_from):
    x = np.array(EDGES + list(np.random.default_rng(bits).integers(-LIMIT, LIMIT, 200)))
    for y in run_truncations(x, bits, one_receiver_from=one_receiver_from)[0]:
        assert set(np.unique(y - (x >> bits))) <= {0, 1}


@pytest.mark.parametrize("one_receiver_from", ONE_RECEIVER)
def test_truncation_is_unbiased(one_receiver_from):
    x = np.full(100_000, 12345 * 2**16 + 2**14, dtype=np.int64)  # frac part 1/4
    for y in run_truncations(x, one_receiver_from=one_receiver_from)[0]:
        assert abs(np.mean(y - x / 2.0**F)) < 0.01  # E[y] = x / 2^f


def _costs(ctx, n):
    x = mpc.share(ctx, np.ones(n) if ctx.pid == 0 else None, 0, shape=(n,))
    y = mpc.share(ctx, np.ones(n) if ctx.pid == 1 else None, 1, shape=(n,))
    a = mpc.share(ctx, np.ones((10, 50)) if ctx.pid == 0 else None, 0, shape=(10, 50))
    b = mpc.share(ctx, np.ones((50, n // 10)) if ctx.pid == 1 else None, 1, shape=(50, n // 10))
    img = mpc.share(ctx, np.ones((1, 3, 12, 12)) if ctx.pid == 0 else None, 0,
                    shape=(1, 3, 12, 12))
    ker = mpc.share(ctx, np.ones((12, 3, 3, 3)) if ctx.pid == 1 else None, 1,
                    shape=(12, 3, 3, 3))
    bit = ctx.protocol.public(ctx, np.ones(n, dtype=DTYPE))
    ops = {"input": lambda: mpc.share(ctx, np.ones(n) if ctx.pid == 2 else None, 2, shape=(n,)),
           "mul": lambda: x * y, "square": lambda: x.square(), "matmul": lambda: a @ b,
           "conv2d": lambda: img.conv2d(ker),  # 12 x 10 x 10 = n outputs
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


def _large_product_costs(ctx, n):
    x = mpc.share(ctx, np.ones(n) if ctx.pid == 0 else None, 0, shape=(n,))
    y = mpc.share(ctx, np.ones(n) if ctx.pid == 1 else None, 1, shape=(n,))
    before = ctx.stats.snapshot()
    z = x * y
    after = ctx.stats.snapshot()
    return after.bytes_sent - before.bytes_sent, after.rounds - before.rounds, z.reveal()


def test_a_large_fused_product_opens_to_one_receiver_in_three_rounds():
    """From ONE_RECEIVER_FROM elements: 30.375 bytes per element in all (f = 16), 10.125 a
    party, 3 rounds (mpc.protocols.replicated.truncation)."""
    n = truncation.ONE_RECEIVER_FROM + 8  # a multiple of 24
    third = n // 3
    helper = 8 * third + kernels.packed_size(third, F + 1) + 2 * third
    a, b = 8 * third + third // 8, 8 * third + kernels.packed_size(third, F + 1)
    assert helper + a + b == 10.125 * n
    for sent, rounds, z in mpc.run_local(_large_product_costs, 3, args=(n,),
                                         protocol="replicated", check=False):
        assert (sent, rounds) == (10.125 * n, 3)
        assert np.max(np.abs(z - 1.0)) <= 2.0**-F


def test_rounds_and_bytes_by_role_match_the_docstrings():
    """Bytes sent and rounds (blocking waits) of each party, sorted by bytes: the figures of
    mpc.protocols.replicated.truncation (f = 16: a fused product 40.375 bytes per element
    in all, 13.46 a party with the roles rotating inside the call, 2 rounds; a truncation
    alone 10 a party) and of sharing (input 8 bytes from the owner to one party; the inner
    dimension of a matrix product free)."""
    counts = mpc.run_local(_costs, 3, args=(N,), protocol="replicated", check=False)

    def by_role(name):
        return sorted(c[name] for c in counts)
    third = N // 3
    helper = 8 * third + 8 * third + kernels.packed_size(third, F + 1) + 2 * third
    other = 8 * third + kernels.packed_size(third, F + 1)
    assert helper + 2 * other == 40.375 * N / 3 and 40.375 * N / 3 == round(13.4583 * N)
    fused = [(helper + 2 * other, 2)] * 3
    # input: share's agreement (one round, 8 bytes a word to each peer: [-1] held, (N,)
    # declared and (owner,) by a non-owner, (N,), (N,), (owner,) by the owner), then the
    # owner's one component, to party owner + 2 only (party owner + 1 receives nothing)
    assert by_role("input") == [(80, 1), (80, 2), (8 * N + 96, 1)]
    assert by_role("mul") == by_role("square") == by_role("matmul") == by_role("conv2d") == fused
    assert by_role("mul_public") == [(10 * N, 2)] * 3
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


@pytest.mark.parametrize("one_receiver_from", ONE_RECEIVER)
@pytest.mark.parametrize("op", ["mul", "truncation", "matmul"])
def test_each_partys_view_is_independent_of_the_secret(op, one_receiver_from):
    """Per party (every party plays the helper, a and b on a third of the elements each),
    the received bytes have every bit set half the time, for a zero secret and a large one
    alike."""
    ops = {"mul": lambda x, y: x * y, "truncation": lambda x, y: x * 0.37,
           "matmul": lambda x, y: x.reshape(40, 500) @ y.reshape(500, 40)}
    small, large = np.zeros(20_000), np.random.default_rng(0).uniform(-1000, 1000, 20_000)
    with mock.patch.object(truncation, "ONE_RECEIVER_FROM", one_receiver_from):
        views = [mpc.run_local(_recorded_views, 3, args=(s, ops[op]), protocol="replicated")
                 for s in (small, large)]
    sizes = [[v.size for v in run] for run in views]
    assert sizes[0] == sizes[1] and min(sizes[0]) > 0
    for pid in range(3):
        a, b = views[0][pid], views[1][pid]
        if a.size == 0:
            continue
        fa, fb = _bit_frequencies(a), _bit_frequencies(b)
        # 6 sigma each (the difference of two frequencies has sqrt(2) sigma: without it,
        # 4.2 sigma, 144 comparisons a run failed falsely about once in 300 runs)
        sigma = np.sqrt(0.25 / a.size)
        assert np.all(np.abs(fa - 0.5) < 6 * sigma), f"party {pid}: a received bit is biased"
        assert np.all(np.abs(fa - fb) < 6 * np.sqrt(2) * sigma), \
            f"party {pid}: view depends on the secret"


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


def _input_views(ctx, value, owner):
    """The share of `value` input by `owner`, and what this party received meanwhile."""
    seen, original = [], ctx.transport._wait

    def recording(frm, seq):
        got_op, array = original(frm, seq)
        seen.append(got_op)
        return got_op, array
    ctx.protocol.common_seed(ctx)  # agreed before, so that only the input is recorded
    ctx.transport._wait = recording
    share = sharing.input_share(ctx, value if ctx.pid == owner else None, owner, value.shape)
    return share, seen


@pytest.mark.parametrize("owner", [0, 1, 2])
def test_non_owners_components_are_uniform_whatever_the_input(owner):
    """Each non-owner's two components (one common-seed stream, and a pairwise stream or
    the owner's one message) are uniform and independent: every bit of each, and of their
    XOR, set half the time, for a zero input and a large one alike. Party owner + 1
    receives nothing; party owner + 2 one message."""
    n = 20_000
    small = np.zeros(n, DTYPE)
    large = np.random.default_rng(owner).integers(0, 2**64, n, dtype=np.uint64)
    runs = [mpc.run_local(_input_views, 3, args=(v, owner), protocol="replicated")
            for v in (small, large)]
    sigma = np.sqrt(0.25 / n)
    for run, value in zip(runs, (small, large)):
        shares = [r[0] for r in run]
        np.testing.assert_array_equal(shares[0][0] + shares[1][0] + shares[2][0], value)
        assert run[(owner + 1) % 3][1] == [] and run[(owner + 2) % 3][1] == ["input"]
    for pid in ((owner + 1) % 3, (owner + 2) % 3):
        for k in (0, 1, "xor"):
            fs = []
            for run in runs:
                s = run[pid][0]
                v = s[0] ^ s[1] if k == "xor" else s[k]
                fs.append(((v[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1))
                          .mean(axis=0))
            assert np.all(np.abs(fs[0] - 0.5) < 6.5 * sigma), f"party {pid}: biased bit"
            # the difference of two frequencies has sqrt(2) sigma: at 6 sigma without it
            # (4.2 of its own), 1152 comparisons a run failed falsely once in 40 runs; 6.5
            # of its own: 1e-7 a run, and a bit moved by 0.033 is still caught
            assert np.all(np.abs(fs[0] - fs[1]) < 6.5 * np.sqrt(2) * sigma), \
                f"party {pid}: depends on x"


def test_the_common_seed_is_common_and_agreed_once():
    """16 random bytes from each party to each other, booked as set-up, then no message."""
    def run(ctx):
        def setup_bytes():
            return ctx.stats.as_dict()["by_op"]["setup"]["bytes_sent"]
        pairwise = setup_bytes()
        with ctx.operation("work"):
            first = sharing.common_ring(ctx, 7, (4,))
            common = setup_bytes() - pairwise
            before = ctx.stats.snapshot()
            again = sharing.common_ring(ctx, 7, (4,))
        return first, again, ctx.stats.snapshot().bytes_sent - before.bytes_sent, common
    out = mpc.run_local(run, 3, protocol="replicated")
    for first, again, extra, common in out:
        np.testing.assert_array_equal(first, out[0][0])
        np.testing.assert_array_equal(again, first)
        assert extra == 0 and common == 32


@given(st.integers(1, 64), st.integers(0, 50), st.integers(0, 2**32))
def test_packed_values_round_trip_in_their_size(width, n, seed):
    values = np.random.default_rng(seed).integers(0, 2**64, n, dtype=np.uint64)
    if width < 64:
        values &= np.uint64((1 << width) - 1)
    packed = kernels.pack(values, width)
    assert packed.dtype == np.uint8 and packed.size == kernels.packed_size(n, width)
    assert packed.size == n * (width // 8) + -(-n * (width % 8) // 8)  # whole bytes, bits
    np.testing.assert_array_equal(kernels.unpack(packed, n, width), values)
    np.testing.assert_array_equal(packed, packed_reference(values, width))


def packed_reference(values: np.ndarray, width: int) -> np.ndarray:
    """The wire layout of mpc.protocols.replicated.kernels, bit by bit: each value's
    width // 8 low bytes, then every value's remaining bits in a row, least significant
    first."""
    whole, rest = width // 8, width % 8
    bits = (values[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    body = np.packbits(bits[:, :8 * whole].astype(np.uint8), axis=1, bitorder="little")
    tail = np.packbits(bits[:, 8 * whole:width].astype(np.uint8).reshape(-1),
                       bitorder="little")
    return np.concatenate([body.reshape(-1), tail])


@given(st.sampled_from([1, 16, 17, 33]), st.integers(0, 20), st.integers(0, 7))
def test_unpack_reads_unaligned_slices_of_a_message(width, n, offset):
    """Received parts are slices of one byte message, at any offset."""
    values = np.random.default_rng(n).integers(0, 2**64, n, dtype=np.uint64)
    values &= np.uint64((1 << width) - 1)
    message = np.concatenate([np.zeros(offset, np.uint8), kernels.pack(values, width)])
    np.testing.assert_array_equal(kernels.unpack(message[offset:], n, width), values)


def test_unpack_refuses_the_wrong_size():
    with pytest.raises(ValueError, match="bytes for 3 values of 17 bits"):
        kernels.unpack(np.zeros(5, np.uint8), 3, 17)


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

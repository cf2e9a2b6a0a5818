"""mpc.kernels and mpc.protocols.dealer.kernels: every numba kernel equals its numpy
reference exactly, on full-range uint64.

Arrays come from a hypothesis-drawn seed and edge fraction: full-range random words with the
edge values 0, 1, 2^63 and 2^64-1 mixed in (all-edge arrays included), so wraparound in every
partial product and sum is exercised. The references themselves are checked against Python
integers on tiny inputs, and the conv adjoints against the ring identity
<conv(x, w), g> == <x, grad_input(g, w)> == <w, grad_weight(x, g)>.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc import kernels as K
from mpc.kernels import conv as KC
from mpc.kernels import matrix as KM
from mpc.protocols.dealer import kernels as DK

EDGES = np.array([0, 1, 2**63, 2**64 - 1], dtype=np.uint64)
MOD = 2**64


class Drawn(list):
    """The drawn arrays, shown in failure reports by how to regenerate them, not by value."""

    def __init__(self, arrays, how):
        super().__init__(arrays)
        self.how = how

    def __repr__(self):
        return self.how


@st.composite
def ring_arrays(draw, *shapes):
    """One uint64 array per shape: full-range words, a drawn fraction replaced by edge values."""
    seed = draw(st.integers(0, 2**32 - 1))
    edge_frac = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    rng = np.random.default_rng(seed)
    out = []
    for shape in shapes:
        x = rng.integers(0, 2**64, size=shape, dtype=np.uint64, endpoint=False)
        mask = rng.random(shape) < edge_frac
        x[mask] = rng.choice(EDGES, size=int(mask.sum()))
        out.append(x)
    return Drawn(out, f"ring_arrays{shapes} with seed={seed}, edge_frac={edge_frac}")


def assert_ring_equal(got, want):
    assert isinstance(got, np.ndarray) and got.dtype == np.uint64, type(got)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_array_equal(got, want)


def ring_dot(x, y):
    """<x, y> in Z_2^64 (uint64 sums wrap)."""
    return np.sum(x * y, dtype=np.uint64)


dims = st.integers(1, 12)


# ---------------------------------------------------------------------------------- matmul

@settings(max_examples=5)
@given(ring_arrays((3, 4), (4, 2)))
def test_matmul_reference_matches_python_ints(ab):
    a, b = ab
    want = [[sum(int(a[i, p]) * int(b[p, j]) for p in range(4)) % MOD for j in range(2)]
            for i in range(3)]
    assert_ring_equal(K.matmul_reference(a, b), np.array(want, dtype=np.uint64))


@given(st.data(), dims, st.integers(1, 80), dims)
def test_matmul_2d(data, m, k, n):
    a, b = data.draw(ring_arrays((m, k), (k, n)))
    assert_ring_equal(K.matmul(a, b), K.matmul_reference(a, b))


@given(st.data(), st.integers(1, 11), st.integers(1, 70), st.integers(1, 9))
def test_ikj_kernel_on_every_shape(data, m, k, n):
    """The small-product kernel directly, above the dispatch thresholds too."""
    a, b, start = data.draw(ring_arrays((m, k), (k, n), (m, n)))
    out = start.copy()
    KM._mm_ikj(a, b, out)
    assert_ring_equal(out, K.matmul_reference(a, b))


@given(st.data(), st.integers(1, 20), st.integers(1, 300), st.integers(1, 40),
       st.booleans(), st.booleans())
def test_wide_kernel_on_every_shape(data, m, k, n, accumulate, src_is_bt):
    """The 512-bit tile kernel directly, whatever the CPU picks (it is generic vector IR):
    partial tiles in both directions, several 16-column panels, odd depths (Winograd's pairs
    and one ordinary step), depth above one packed block."""
    a, b, start = data.draw(ring_arrays((m, k), (k, n), (m, n)))
    want = K.matmul_reference(a, b)
    out = start.copy()
    KM._mm_wide(a, np.ascontiguousarray(b.T) if src_is_bt else b, src_is_bt, out, accumulate)
    assert_ring_equal(out, want + start if accumulate else want)


@settings(max_examples=5)
@given(ring_arrays((17, 600), (600, 33)))
def test_wide_kernel_depth_blocks(ab):
    """Depth 600: three even blocks of 200 of Winograd pairs, each with its own corrections."""
    a, b = ab
    out = np.empty((17, 33), dtype=np.uint64)
    KM._mm_wide(a, b, False, out, False)
    assert_ring_equal(out, K.matmul_reference(a, b))


@settings(max_examples=5)
@given(ring_arrays((9, 1100), (1100, 37)))
def test_matmul_several_packed_blocks(ab):
    """Depth above _WIDE_KC (five blocks) and more columns than two panels."""
    a, b = ab
    assert KM._WIDE_KC < 1100 and 2 * KM._NR < 37
    assert_ring_equal(K.matmul(a, b), K.matmul_reference(a, b))


@given(st.data(), st.integers(1, 4), dims, st.integers(1, 40), dims)
def test_matmul_batched_and_broadcast(data, batch, m, k, n):
    a3, b3, a2, b2 = data.draw(ring_arrays((batch, m, k), (batch, k, n), (m, k), (k, n)))
    for x, y in [(a3, b3), (a3, b2), (a2, b3), (a3[None], b3[:1]), (a3[:, None], b3[None])]:
        assert_ring_equal(K.matmul(x, y), K.matmul_reference(x, y))


@given(st.data(), dims, dims)
def test_matmul_1d_operands(data, k, n):
    v, w, b, b3 = data.draw(ring_arrays((k,), (k,), (k, n), (2, k, n)))
    for x, y in [(v, w), (v, b), (b.T, v), (v, b3)]:
        assert_ring_equal(np.asarray(K.matmul(x, y)), np.asarray(K.matmul_reference(x, y)))


@given(st.data(), dims, st.integers(1, 40), st.integers(1, 30))
def test_matmul_accumulate(data, m, k, n):
    a, b, start, b3 = data.draw(ring_arrays((m, k), (k, n), (m, n), (2, k, n)))
    out = start.copy()
    assert K.matmul_accumulate(a, b, out) is out
    assert_ring_equal(out, start + K.matmul_reference(a, b))
    out = start.T.copy().T  # not C-contiguous unless a vector: the fallback
    K.matmul_accumulate(a, b, out)
    assert_ring_equal(out, start + K.matmul_reference(a, b))
    out3 = np.stack([start, start])
    K.matmul_accumulate(a, b3, out3)
    assert_ring_equal(out3, start + K.matmul_reference(a, b3))


def test_matmul_rejects_bad_input():
    a = np.ones((2, 3), dtype=np.uint64)
    with pytest.raises(ValueError):
        K.matmul(a, a)
    with pytest.raises(TypeError):
        K.matmul(a.astype(np.int64), a.T)
    assert_ring_equal(K.matmul(a[:, :0], a[:0]), np.zeros((2, 3), dtype=np.uint64))


# ---------------------------------------------------------------------------------- conv2d

conv_cases = st.tuples(
    st.integers(1, 3), st.integers(1, 3), st.integers(1, 4),  # N, C, O
    st.integers(1, 4), st.integers(1, 4),  # kh, kw (non-square included)
    st.sampled_from([(1, 1), (2, 2), (1, 2), (2, 1), (3, 2)]),  # stride
    st.sampled_from([(0, 0), (1, 1), (2, 2), (1, 0), (0, 2)]),  # padding
    st.integers(0, 6), st.integers(0, 6))  # extra input height/width beyond the kernel


def conv_shapes(case):
    n, c, o, kh, kw, stride, padding, eh, ew = case
    x_shape = (n, c, max(1, kh + eh - 2 * padding[0]), max(1, kw + ew - 2 * padding[1]))
    ho = (x_shape[2] + 2 * padding[0] - kh) // stride[0] + 1
    wo = (x_shape[3] + 2 * padding[1] - kw) // stride[1] + 1
    return x_shape, (o, c, kh, kw), (n, o, ho, wo), stride, padding


@settings(max_examples=5)
@given(ring_arrays((1, 2, 4, 3), (2, 2, 2, 3)))
def test_conv_reference_matches_python_ints(xw):
    x, w = xw
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.zeros((1, 2, 3, 2), dtype=object)
    for o in range(2):
        for i in range(3):
            for j in range(2):
                want[0, o, i, j] = sum(
                    int(xp[0, c, 2 * i + di, 2 * j + dj]) * int(w[o, c, di, dj])
                    for c in range(2) for di in range(2) for dj in range(3)) % MOD
    got = K.conv2d_reference(x, w, (2, 2), (1, 1))
    assert_ring_equal(got, want.astype(np.uint64))


@given(st.data(), conv_cases)
def test_conv2d_and_im2col(data, case):
    x_shape, w_shape, _, stride, padding = conv_shapes(case)
    x, w = data.draw(ring_arrays(x_shape, w_shape))
    kh, kw = w_shape[2:]
    assert_ring_equal(K.im2col(x, kh, kw, stride, padding),
                      K.im2col_reference(x, kh, kw, stride, padding))
    assert_ring_equal(K.conv2d(x, w, stride, padding), K.conv2d_reference(x, w, stride, padding))


@given(st.data(), conv_cases)
def test_conv_adjoints(data, case):
    x_shape, w_shape, g_shape, stride, padding = conv_shapes(case)
    x, w, g = data.draw(ring_arrays(x_shape, w_shape, g_shape))
    kh, kw = w_shape[2:]
    cols = K.im2col(x, kh, kw, stride, padding)
    gi = K.conv2d_grad_input(g, w, x_shape, stride, padding)
    gw = K.conv2d_grad_weight(x, g, w_shape, stride, padding)
    assert_ring_equal(K.col2im(cols, x_shape, kh, kw, stride, padding),
                      K.col2im_reference(cols, x_shape, kh, kw, stride, padding))
    assert_ring_equal(gi, K.conv2d_grad_input_reference(g, w, x_shape, stride, padding))
    assert_ring_equal(gw, K.conv2d_grad_weight_reference(x, g, w_shape, stride, padding))
    y = K.conv2d(x, w, stride, padding)
    assert ring_dot(y, g) == ring_dot(x, gi) == ring_dot(w, gw)


@given(st.data(), conv_cases)
def test_conv2d_pair_accumulate(data, case):
    x_shape, w_shape, out_shape, stride, padding = conv_shapes(case)
    x1, x2, w1, w2, out = data.draw(ring_arrays(x_shape, x_shape, w_shape, w_shape, out_shape))
    want = out + K.conv2d_reference(x1, w1, stride, padding) \
        + K.conv2d_reference(x2, w2, stride, padding)
    got = K.conv2d_pair_accumulate(x1, w1, x2, w2, out, stride, padding)
    assert got is out
    assert_ring_equal(out, want)


@given(st.data(), conv_cases, st.booleans())
def test_both_conv_kernels(data, case, pair):
    """The two direct kernels (pixel tiles; runs of a row, for a unit horizontal stride)
    whichever conv2d picks, single and pair."""
    x_shape, w_shape, out_shape, stride, padding = conv_shapes(case)
    x1, x2, w1, w2, start = data.draw(
        ring_arrays(x_shape, x_shape, w_shape, w_shape, out_shape))
    geo = KC._geometry(x_shape, w_shape[2], w_shape[3], stride, padding)
    o = w_shape[0]
    flat = (x_shape[0], o, -1)
    if pair:
        want = start + K.conv2d_reference(x1, w1, stride, padding) \
            + K.conv2d_reference(x2, w2, stride, padding)
        args = (x1, x2, True, np.concatenate([w1.reshape(o, -1), w2.reshape(o, -1)], axis=1))
    else:
        want = K.conv2d_reference(x1, w1, stride, padding)
        args = (x1, x1, False, w1.reshape(o, -1))
    for kernel in (KC._conv_wide, KC._conv_runs) if stride[1] == 1 else (KC._conv_wide,):
        got = start.copy()
        kernel(*args, geo, got.reshape(flat), pair)
        assert_ring_equal(got, want)


@settings(max_examples=3)
@given(ring_arrays((2, 13, 7, 6), (20, 13, 5, 5), (2, 20, 7, 6)))
def test_wide_conv_deeper_than_one_block(xwo):
    """C*kh*kw = 325 > _WIDE_KC: the depth in two blocks (164 and an odd 161), accumulated;
    20 channels: two panels."""
    x, w, start = xwo
    assert 13 * 5 * 5 > KM._WIDE_KC and w.shape[0] > KM._NR
    geo = KC._geometry(x.shape, 5, 5, (1, 1), (2, 2))
    for kernel in (KC._conv_wide, KC._conv_runs):
        got = start.copy()
        kernel(x, x, False, w.reshape(20, -1), geo, got.reshape(2, 20, -1), True)
        assert_ring_equal(got, start + K.conv2d_reference(x, w, (1, 1), (2, 2)))


def test_conv2d_pair_accumulate_refuses_a_wrong_output():
    x, w = np.zeros((1, 1, 4, 4), np.uint64), np.zeros((2, 1, 3, 3), np.uint64)
    with pytest.raises(ValueError, match="output"):
        K.conv2d_pair_accumulate(x, w, x, w, np.zeros((1, 2, 3, 3), np.uint64))


@settings(max_examples=3)
@given(ring_arrays((4, 3, 12, 10), (32, 3, 3, 5), (4, 32, 6, 10)))
def test_conv_large_enough_for_the_dot_kernel(xwg):
    """Shapes where the adjoints use the tiled matmul, the forward the pixel-tile kernel
    (horizontal stride 2) on two 16-channel panels."""
    x, w, g = xwg
    assert w.shape[0] >= 2 * KM._NR and w.shape[0] * 3 * 3 * 5 * 60 >= KM._WIDE_MIN_WORK
    args = ((2, 1), (1, 2))
    assert_ring_equal(K.conv2d(x, w, *args), K.conv2d_reference(x, w, *args))
    assert_ring_equal(K.conv2d_grad_weight(x, g, w.shape, *args),
                      K.conv2d_grad_weight_reference(x, g, w.shape, *args))
    assert_ring_equal(K.conv2d_grad_input(g, w, x.shape, *args),
                      K.conv2d_grad_input_reference(g, w, x.shape, *args))


def test_conv2d_rejects_bad_shapes():
    x = np.zeros((1, 2, 3, 3), dtype=np.uint64)
    w = np.zeros((4, 2, 2, 2), dtype=np.uint64)
    with pytest.raises(ValueError):
        K.conv2d(x, np.zeros((1, 3, 2, 2), dtype=np.uint64))
    with pytest.raises(ValueError):
        K.conv2d(x, np.zeros((1, 2, 4, 4), dtype=np.uint64))
    g = np.zeros((1, 4, 2, 2), dtype=np.uint64)
    assert K.conv2d_grad_input(g, w, x.shape).shape == x.shape
    assert K.conv2d_grad_weight(x, g, w.shape).shape == w.shape
    with pytest.raises(ValueError):
        K.conv2d_grad_input(g[:, :2], w, x.shape)
    with pytest.raises(ValueError):
        K.conv2d_grad_weight(x, g, (2, 2, 2, 2))


# ---------------------------------------------------------------------------------- Beaver

@given(st.data(), st.lists(st.integers(1, 5), min_size=0, max_size=3), st.booleans())
def test_beaver_combine_same_shape(data, shape, add_de):
    d, e, a, b, c = data.draw(ring_arrays(*[tuple(shape)] * 5))
    assert_ring_equal(DK.beaver_combine(d, e, a, b, c, add_de),
                      DK.beaver_combine_reference(d, e, a, b, c, add_de))


@given(st.data(), st.lists(st.integers(1, 5), min_size=0, max_size=3), st.booleans())
def test_beaver_combine_sums_the_opening_in_its_pass(data, shape, add_de):
    """d and e arrive as this party's masked shares and the others' sum."""
    d0, d1, e0, e1, a, b, c = data.draw(ring_arrays(*[tuple(shape)] * 7))
    want = DK.beaver_combine_reference(d0 + d1, e0 + e1, a, b, c, add_de)
    got = DK.beaver_combine_opening(d0, d1, e0, e1, a, b, c.copy(), add_de)
    assert_ring_equal(got, want)
    assert got.shape == c.shape
    with pytest.raises(ValueError, match="different shapes"):
        DK.beaver_combine_opening(d0, d1, e0, e1.reshape(-1)[:0], a, b, c, add_de)


@given(st.data(), st.sampled_from([((3, 1), (1, 4)), ((4,), (2, 4)), ((2, 3, 1), (3, 5)),
                                   ((1,), (6,)), ((), (2, 2))]), st.booleans())
def test_beaver_combine_broadcast(data, shapes, add_de):
    xs, ys = shapes
    d, a, e, b, c = data.draw(ring_arrays(xs, xs, ys, ys, np.broadcast_shapes(xs, ys)))
    assert_ring_equal(DK.beaver_combine(d, e, a, b, c, add_de),
                      DK.beaver_combine_reference(d, e, a, b, c, add_de))


@given(st.data(), dims, st.integers(1, 40), dims, st.integers(0, 2), st.booleans())
def test_beaver_combine_matmul(data, m, k, n, batch, add_de):
    lead = (batch,) if batch else ()
    d, a, e, b, c = data.draw(ring_arrays(lead + (m, k), lead + (m, k), (k, n), (k, n),
                                          lead + (m, n)))
    assert_ring_equal(DK.beaver_combine_matmul(d, e, a, b, c, add_de),
                      DK.beaver_combine_matmul_reference(d, e, a, b, c, add_de))


# ---------------------------------------------------------------------------------- bits

@given(st.lists(st.booleans(), max_size=70), st.booleans())
def test_pack_unpack_bits(bits, as_bool):
    x = np.array(bits, dtype=np.bool_ if as_bool else np.uint8)
    packed = K.pack_bits(x)
    assert packed.dtype == np.uint8 and packed.size == (len(bits) + 7) // 8
    out = K.unpack_bits(packed, len(bits))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.array(bits, dtype=np.uint8))


def test_unpack_bits_rejects_overlong_count():
    with pytest.raises(ValueError):
        K.unpack_bits(np.zeros(1, dtype=np.uint8), 9)


@given(data=st.data())
def test_trunc_finish_matches_reference(data):
    n = data.draw(st.integers(1, 50))
    c, t, m = data.draw(ring_arrays((n,), (n,), (n,)))
    bits = data.draw(st.integers(1, 40))
    for first in (True, False):
        assert_ring_equal(K.trunc_finish(c, t, m, bits, first),
                          K.trunc_finish_reference(c, t, m, bits, first))


@given(data=st.data())
def test_split_truncation_kernels_match_references(data):
    n = data.draw(st.integers(0, 50))
    c, t, m = data.draw(ring_arrays((n,), (n,), (n,)))
    bits = data.draw(st.integers(1, 40))
    packed = K.top_bits_packed(c)
    np.testing.assert_array_equal(packed, K.top_bits_packed_reference(c))
    assert packed.dtype == np.uint8 and packed.size == (n + 7) // 8
    got = K.trunc_finish_bits(packed, t, m, bits)
    assert_ring_equal(got, K.trunc_finish_bits_reference(packed, t, m, bits))
    assert_ring_equal(got, K.trunc_finish_reference(c, t, m, bits, False))
    out = np.zeros(n + 2, dtype=np.uint64)
    K.trunc_finish(c, t, m, bits, True, out=out[1:n + 1])
    assert_ring_equal(out[1:n + 1], K.trunc_finish_reference(c, t, m, bits, True))
    assert out[0] == out[-1] == 0


def test_trunc_finish_bits_refuses_a_wrong_bit_count():
    t = np.zeros(9, dtype=np.uint64)
    with pytest.raises(ValueError, match="packed bytes"):
        K.trunc_finish_bits(np.zeros(1, dtype=np.uint8), t, t, 16)


@given(data=st.data())
def test_comparison_level_kernels_match_references(data):
    n = data.draw(st.integers(1, 40))
    lt, eq, a, b, c = data.draw(ring_arrays(*[(n,)] * 5))
    assert_ring_equal(K.compact_even(lt), K.compact_even_reference(lt))
    level = data.draw(st.integers(0, 5))
    width, half = 64 >> level, 32 >> level
    offset = data.draw(st.integers(0, 64 - width))
    low = np.uint64(2**64 - 1) if width == 64 else np.uint64((1 << width) - 1)
    lt, eq = lt & low, eq & low
    field = lambda w: (w >> np.uint64(offset)) & low  # noqa: E731
    x, y, odd_lt = DK.lt_level_prepare_reference(lt, eq, half)
    masked = DK.lt_level_masked(lt, eq, half, a, b, offset, width, np.uint64)
    assert_ring_equal(masked, np.concatenate([x ^ field(a), y ^ field(b)]))
    d, e = masked[:n], masked[n:]
    for first in (True, False):
        z = DK.and_combine_reference(d, e, field(a), field(b), field(c), first)
        new_lt, new_eq = DK.lt_level_finish(d, e, a, b, c, offset, width, first, lt, half)
        assert_ring_equal(new_lt, odd_lt ^ (z & np.uint64((1 << half) - 1)))
        assert_ring_equal(new_eq, z >> np.uint64(half))


@given(st.integers(1, 100), st.sampled_from([1, 2, 4]), st.integers(0, 2**32 - 1))
def test_pack_narrow_round_trip(n, width, seed):
    values = np.random.default_rng(seed).integers(0, 1 << width, n).astype(np.uint64)
    packed = K.pack_narrow(values, width)
    assert packed.dtype == np.uint8 and packed.size == -(-n * width // 8)
    assert_ring_equal(K.unpack_narrow(packed, width, n), values)


@given(data=st.data())
def test_trunc_pair_matches_reference(data):
    n = data.draw(st.integers(0, 50))
    (r,) = data.draw(ring_arrays((n,)))
    bits = data.draw(st.integers(1, 61))
    for got, want in zip(DK.trunc_pair(r, bits), DK.trunc_pair_reference(r, bits)):
        assert_ring_equal(got, want)


@given(data=st.data())
def test_trunc_pair_product_matches_reference(data):
    n = data.draw(st.integers(0, 50))
    q, a, b = data.draw(ring_arrays((n,), (n,), (n,)))
    bits = data.draw(st.integers(1, 61))
    want = DK.trunc_pair_product_reference(q, a * b, bits)
    for got in (DK.trunc_pair_product(q, a * b, bits), DK.trunc_pair_product(q, a, bits, b)):
        for g, w in zip(got, want):
            assert_ring_equal(g, w)


@given(data=st.data())
def test_trunc_corrections_match_reference(data):
    n = data.draw(st.integers(0, 40))
    bits = data.draw(st.integers(1, 61))
    narrow = np.dtype(np.uint8 if bits <= 8 else np.uint16 if bits <= 16
                      else np.uint32 if bits <= 32 else np.uint64)
    q, c, b, t_other, m_other = data.draw(ring_arrays(*[(n,)] * 5))
    m_other = m_other.astype(narrow)
    mask = np.uint64((1 << bits) - 1)
    half = q // np.uint64(3)  # q, c and b as two shares each
    pair = lambda v: (v - half, half)  # noqa: E731
    for kwargs, want in [
            ({}, DK.trunc_pair_reference(q, bits)),
            ({"c": c}, DK.trunc_pair_product_reference(q, c, bits)),
            ({"a": pair(c), "b": pair(b)}, DK.trunc_pair_product_reference(q, c * b, bits))]:
        t_out, m_out = np.empty(n, np.uint64), np.empty(n, narrow)
        DK.trunc_corrections(pair(q), bits, t_other, m_other, t_out, m_out, **kwargs)
        assert_ring_equal(t_out, want[0] - t_other)
        assert_ring_equal(m_out.astype(np.uint64), (want[1] - m_other.astype(np.uint64)) & mask)


@given(data=st.data())
def test_trunc_finish_takes_a_narrow_m(data):
    n = data.draw(st.integers(1, 40))
    c, t, m = data.draw(ring_arrays((n,), (n,), (n,)))
    m16 = (m & np.uint64(0xFFFF)).astype(np.uint16)
    for first in (False, True):
        assert_ring_equal(K.trunc_finish(c, t, m16, 16, first),
                          K.trunc_finish_reference(c, t, m, 16, first))
    packed = K.top_bits_packed(c)
    assert_ring_equal(K.trunc_finish_bits(packed, t, m16, 16),
                      K.trunc_finish_bits_reference(packed, t, m, 16))
    with pytest.raises(TypeError):
        K.trunc_finish(c, t, m16.astype(np.uint8), 16, True)


@given(st.data(), st.lists(st.integers(1, 5), min_size=1, max_size=3), st.booleans())
def test_beaver_combine_in_place(data, shape, add_de):
    d, e, a, b, c = data.draw(ring_arrays(*[tuple(shape)] * 5))
    want = DK.beaver_combine_reference(d, e, a, b, c, add_de)
    got = DK.beaver_combine(d, e, a, b, c, add_de, in_place=True)
    assert_ring_equal(got, want)
    assert np.shares_memory(got, c)
    m = (shape[0], 3)
    d, a, e, b, c = data.draw(ring_arrays(m, m, (3, 2), (3, 2), (shape[0], 2)))
    want = DK.beaver_combine_matmul_reference(d, e, a, b, c, add_de)
    assert_ring_equal(DK.beaver_combine_matmul(d, e, a, b, c, add_de, in_place=True), want)


def test_keep_freed_memory_is_idempotent():
    from mpc.kernels.memory import keep_freed_memory
    assert keep_freed_memory() == keep_freed_memory()

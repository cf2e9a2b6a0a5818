"""Ring matrix product on uint64: tiled numba kernels and their numpy reference.

Arithmetic is in Z_2^64: uint64 wraparound is the reduction, so every value and constant stays
np.uint64 (uint64 mixed with a signed integer becomes float64 in numpy and numba, which
silently loses low bits). Single-threaded, GIL released (see mpc.kernels).

Two families, chosen once per CPU (`_WIDE`):
- with AVX-512DQ (a native 64-bit lane multiply, vpmullq), `_mm_wide`: an 8x16 register tile
  written as explicit 512-bit vector IR (`_tile_8x16`), because LLVM's vectorizer stays at
  256 bits on these CPUs; about twice the throughput of the split kernel there;
- elsewhere (AVX2), `_mm_dot`/`_mm_ikj`: 32-bit split products that auto-vectorize.
"""

from __future__ import annotations

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, config
from numba.extending import intrinsic

_U64 = np.dtype(np.uint64)
_ZERO = np.uint64(0)
_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)

# matmul tuning (AVX2, single core). The tiled kernel packs the right operand (~2 ns a word),
# which pays off from ~32 rows of a, or when short output rows starve the i-k-j kernel.
_DOT_MIN_DEPTH = 32
_DOT_MIN_ROWS = 32
_IKJ_MIN_COLS = 32
_KC = 512  # depth of a packed block of the right operand
_BLOCK_WORDS = 8192  # nc * kc uint64 per packed array: both arrays together stay in L2


# wide kernel tuning (AVX-512DQ, single core): an 8x16 tile holds 16 zmm accumulators; a packed
# block of the right operand is at most _WIDE_KC deep (a 16-column panel of it, 32 KiB, stays in
# L1), rows are taken _WIDE_MC at a time (their block stays in L2).
_MR = 8
_NR = 16
_WIDE_KC = 256
_WIDE_MC = 128
# below these the tile's padding costs more than the 512-bit lanes give (measured)
_WIDE_MIN_ROWS = 4
_WIDE_MIN_COLS = 8
_WIDE_MIN_DEPTH = 4


def _vector_mul64() -> bool:
    """Whether numba's target CPU multiplies 64-bit vector lanes natively (AVX-512F + DQ):
    numba compiles for the host's features unless NUMBA_CPU_FEATURES names others."""
    if config.CPU_FEATURES is not None:
        return {"+avx512f", "+avx512dq"} <= set(config.CPU_FEATURES.split(","))
    host = llvm.get_host_cpu_features()
    return bool(host.get("avx512f", False) and host.get("avx512dq", False))


_WIDE = _vector_mul64()


def check_u64(*arrays: np.ndarray) -> None:
    """Refuse non-uint64 input instead of letting numpy promote it (possibly to float64)."""
    for x in arrays:
        if x.dtype != _U64:
            raise TypeError(f"ring kernels take uint64 arrays, got dtype {x.dtype}")


def matmul_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.matmul on uint64: exact mod 2^64 (numpy's integer loops wrap), but slow."""
    a, b = np.asarray(a), np.asarray(b)
    check_u64(a, b)
    return np.matmul(a, b)


@njit(cache=True, nogil=True)
def _mm_ikj(a, b, out):
    """out = a @ b by row updates (i-k-j); best when a has few rows or the depth is small."""
    m, k = a.shape
    n = b.shape[1]
    for i in range(m):
        row = out[i]
        for j in range(n):
            row[j] = _ZERO
        for p in range(k):
            av = a[i, p]
            bp = b[p]
            for j in range(n):
                row[j] += av * bp[j]


@njit(cache=True, nogil=True)
def _pack(src, src_is_bt, p0, p1, j0, j1, bt, bx):
    """Copy depth p0:p1 of output columns j0:j1 of the right operand into bt (one contiguous row
    per output column) and bx (the same with the two 32-bit halves of each word swapped).

    src is b [k, n] or, if src_is_bt, its transpose [n, k]."""
    for jj in range(j1 - j0):
        col = src[j0 + jj, p0:p1] if src_is_bt else src[p0:p1, j0 + jj]
        t = bt[jj]
        x = bx[jj]
        for p in range(p1 - p0):
            v = col[p]
            t[p] = v
            x[p] = (v << _S32) | (v >> _S32)


@njit(cache=True, nogil=True)
def _store(out, i, j, low, cross, first):
    """out[i, j] (+)= low + 2^32 cross: recombine the two halves of a split product."""
    v = low + (np.uint64(cross) << _S32)
    if first:
        out[i, j] = v
    else:
        out[i, j] += v


@njit(cache=True, nogil=True, inline="always")
def _tile4x2(a, a32, i, p0, bt, bx32, jj, out, j, first):
    """out[i:i+4, j:j+2] (+)= a[i:i+4, p0:p0+kc] @ bt[jj:jj+2].T with 16 register accumulators.

    a*b mod 2^64 = lo(a)lo(b) + 2^32 (lo(a)hi(b) + hi(a)lo(b) mod 2^32). The first sum uses
    32x32->64 multiplies (vpmuludq); the cross sum is a plain uint32 dot product of the 32-bit
    view of a with the halves-swapped view of b (vpmulld, 8 lanes). Both vectorize as
    reductions, so no accumulator goes through memory."""
    kc = bt.shape[1]
    a0 = a[i, p0:p0 + kc]
    a1 = a[i + 1, p0:p0 + kc]
    a2 = a[i + 2, p0:p0 + kc]
    a3 = a[i + 3, p0:p0 + kc]
    b0 = bt[jj]
    b1 = bt[jj + 1]
    l00 = l01 = l10 = l11 = l20 = l21 = l30 = l31 = _ZERO
    for p in range(kc):
        v0 = b0[p] & _M32
        v1 = b1[p] & _M32
        u = a0[p] & _M32
        l00 += u * v0
        l01 += u * v1
        u = a1[p] & _M32
        l10 += u * v0
        l11 += u * v1
        u = a2[p] & _M32
        l20 += u * v0
        l21 += u * v1
        u = a3[p] & _M32
        l30 += u * v0
        l31 += u * v1
    q0 = 2 * p0
    q1 = 2 * (p0 + kc)
    x0 = a32[i, q0:q1]
    x1 = a32[i + 1, q0:q1]
    x2 = a32[i + 2, q0:q1]
    x3 = a32[i + 3, q0:q1]
    y0 = bx32[jj]
    y1 = bx32[jj + 1]
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = np.uint32(0)
    for q in range(2 * kc):
        w0 = y0[q]
        w1 = y1[q]
        u32 = x0[q]
        c00 = np.uint32(c00 + u32 * w0)
        c01 = np.uint32(c01 + u32 * w1)
        u32 = x1[q]
        c10 = np.uint32(c10 + u32 * w0)
        c11 = np.uint32(c11 + u32 * w1)
        u32 = x2[q]
        c20 = np.uint32(c20 + u32 * w0)
        c21 = np.uint32(c21 + u32 * w1)
        u32 = x3[q]
        c30 = np.uint32(c30 + u32 * w0)
        c31 = np.uint32(c31 + u32 * w1)
    _store(out, i, j, l00, c00, first)
    _store(out, i, j + 1, l01, c01, first)
    _store(out, i + 1, j, l10, c10, first)
    _store(out, i + 1, j + 1, l11, c11, first)
    _store(out, i + 2, j, l20, c20, first)
    _store(out, i + 2, j + 1, l21, c21, first)
    _store(out, i + 3, j, l30, c30, first)
    _store(out, i + 3, j + 1, l31, c31, first)


@njit(cache=True, nogil=True)
def _tile1x1(a, a32, i, p0, bt, bx32, jj, out, j, first):
    """Single output of the split product (edges of the 4x2 tiling)."""
    kc = bt.shape[1]
    ar = a[i, p0:p0 + kc]
    br = bt[jj]
    low = _ZERO
    for p in range(kc):
        low += (ar[p] & _M32) * (br[p] & _M32)
    xr = a32[i, 2 * p0:2 * (p0 + kc)]
    yr = bx32[jj]
    cross = np.uint32(0)
    for q in range(2 * kc):
        cross = np.uint32(cross + xr[q] * yr[q])
    _store(out, i, j, low, cross, first)


@njit(cache=True, nogil=True)
def _mm_dot(a, src, src_is_bt, out, accumulate):
    """out (+)= a @ b for C-contiguous a [m, k]; src is b [k, n] or (src_is_bt) b.T [n, k].

    Blocks of the right operand are packed (transposed, plus a halves-swapped copy) so that
    both operands are contiguous along the depth, then covered with 4x2 register tiles."""
    m, k = a.shape
    n = src.shape[0] if src_is_bt else src.shape[1]
    a32 = a.view(np.uint32)
    kc_max = min(k, _KC)
    nc_max = max(2, (_BLOCK_WORDS // kc_max) // 2 * 2)
    buf_t = np.empty(nc_max * kc_max, dtype=np.uint64)
    buf_x = np.empty(nc_max * kc_max, dtype=np.uint64)
    m4 = m - m % 4
    for j0 in range(0, n, nc_max):
        j1 = min(j0 + nc_max, n)
        nc = j1 - j0
        n2 = nc - nc % 2
        for p0 in range(0, k, kc_max):
            p1 = min(p0 + kc_max, k)
            bt = buf_t[:nc * (p1 - p0)].reshape(nc, p1 - p0)
            bx = buf_x[:nc * (p1 - p0)].reshape(nc, p1 - p0)
            _pack(src, src_is_bt, p0, p1, j0, j1, bt, bx)
            bx32 = bx.view(np.uint32)
            first = p0 == 0 and not accumulate
            for i in range(0, m4, 4):
                for jj in range(0, n2, 2):
                    _tile4x2(a, a32, i, p0, bt, bx32, jj, out, j0 + jj, first)
                for jj in range(n2, nc):
                    for r in range(4):
                        _tile1x1(a, a32, i + r, p0, bt, bx32, jj, out, j0 + jj, first)
            for i in range(m4, m):
                for jj in range(nc):
                    _tile1x1(a, a32, i, p0, bt, bx32, jj, out, j0 + jj, first)


_V8 = ir.VectorType(ir.IntType(64), 8)
_I64 = ir.IntType(64)


def _splat(builder, word):
    """<8 x i64> with every lane = word."""
    undef = ir.Constant(_V8, ir.Undefined)
    lane0 = ir.Constant(ir.IntType(32), 0)
    return builder.shuffle_vector(builder.insert_element(undef, word, lane0), undef,
                                  ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8))


def _store_rows(builder, accs, pc, ldc, rows, add):
    """dst[r ldc + 8 v: +8] (+)= accs[r][v] for r < rows (unrolled, a branch per row)."""
    adding = builder.icmp_signed("!=", add, ir.Constant(_I64, 0))
    zero = ir.Constant(_V8, [0] * 8)
    for r, row in enumerate(accs):
        with builder.if_then(builder.icmp_signed("<", ir.Constant(_I64, r), rows)):
            start = builder.gep(pc, [builder.mul(ldc, ir.Constant(_I64, r))])
            for v, acc in enumerate(row):
                q = builder.bitcast(builder.gep(start, [ir.Constant(_I64, 8 * v)]),
                                    _V8.as_pointer())
                old = builder.select(adding, builder.load(q, align=8), zero)
                builder.store(builder.add(old, builder.load(acc)), q, align=8)


@intrinsic
def _tile_8x16(typingctx, base, row_offs, depth_offs, panel, kc, dst, dst_off, ldc, rows, add):
    """dst[dst_off + r ldc + 0:16] (+)= sum_p base[row_offs[r] + depth_offs[p]] panel[p, 0:16]
    mod 2^64 for r < rows (<= 8), p < kc: one register tile of a product, in 16 512-bit
    accumulators, stored straight into dst (add nonzero: accumulated).

    base, row_offs, depth_offs, panel and dst are addresses (uintp) of uint64 words (base, the
    panel [kc, 16], dst) or int64 offsets counted in words (row_offs: 8 of them, depth_offs:
    kc). The left operand is read through the two offset tables, so a strided matrix
    (row_offs = i lda, depth_offs = p) and an implicit patch matrix of a convolution (pixel
    and kernel offsets into the padded image) are the same call. Each step broadcasts 8 left
    words and multiplies them with the panel's 2 vectors: 16 vpmullq with AVX-512DQ. Generic
    LLVM vector IR: on a CPU without 512-bit lanes it is split (correct, slower; see _WIDE)."""
    sig = types.void(types.uintp, types.uintp, types.uintp, types.uintp, types.intp,
                     types.uintp, types.intp, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        base, row_offs, depth_offs, panel, kc, dst, dst_off, ldc, rows, add = args
        u64p = _I64.as_pointer()
        pa = builder.inttoptr(base, u64p)
        pr = builder.inttoptr(row_offs, u64p)
        pd = builder.inttoptr(depth_offs, u64p)
        pb = builder.inttoptr(panel, u64p)
        pc = builder.gep(builder.inttoptr(dst, u64p), [dst_off])
        zero = ir.Constant(_V8, [0] * 8)
        accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(_NR // 8)]
                for _ in range(_MR)]
        starts = [builder.gep(pa, [builder.load(builder.gep(pr, [ir.Constant(_I64, r)]))])
                  for r in range(_MR)]
        with cgutils.for_range(builder, kc) as loop:
            p = loop.index
            step = builder.gep(pb, [builder.mul(p, ir.Constant(_I64, _NR))])
            bvec = [builder.load(builder.bitcast(builder.gep(step, [ir.Constant(_I64, 8 * v)]),
                                                 _V8.as_pointer()), align=8)
                    for v in range(_NR // 8)]
            d = builder.load(builder.gep(pd, [p]))
            for r in range(_MR):
                av = _splat(builder, builder.load(builder.gep(starts[r], [d]), align=8))
                for v, bv in enumerate(bvec):
                    acc = accs[r][v]
                    builder.store(builder.add(builder.load(acc), builder.mul(av, bv)), acc)
        _store_rows(builder, accs, pc, ldc, rows, add)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _tile_8x16_pairs(typingctx, base, row_offs, depth_offs, panel, kc, rcorr, ccorr, dst,
                     dst_off, ldc, rows, add):
    """_tile_8x16 with half the multiplications (Winograd's inner product, 1968): over a
    commutative ring, sum_p a_p b_p = sum_q (a_2q + b_2q+1)(a_2q+1 + b_2q) - sum_q a_2q a_2q+1
    - sum_q b_2q b_2q+1, so each pair of depth steps costs one vpmullq a vector instead of two
    (and two adds). rcorr (8 words, one a row) and ccorr (16, one a column) are the two
    correction sums over this block's pairs, subtracted before the store; an odd last step is
    an ordinary product. Exact mod 2^64: only ring identities, no division."""
    sig = types.void(types.uintp, types.uintp, types.uintp, types.uintp, types.intp,
                     types.uintp, types.uintp, types.uintp, types.intp, types.intp, types.intp,
                     types.intp)

    def codegen(context, builder, signature, args):
        base, row_offs, depth_offs, panel, kc, rcorr, ccorr, dst, dst_off, ldc, rows, add = args
        u64p = _I64.as_pointer()
        v8p = _V8.as_pointer()
        pa = builder.inttoptr(base, u64p)
        pr = builder.inttoptr(row_offs, u64p)
        pd = builder.inttoptr(depth_offs, u64p)
        pb = builder.inttoptr(panel, u64p)
        prc = builder.inttoptr(rcorr, u64p)
        pcc = builder.inttoptr(ccorr, u64p)
        pc = builder.gep(builder.inttoptr(dst, u64p), [dst_off])
        nv = _NR // 8
        zero = ir.Constant(_V8, [0] * 8)
        accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(nv)] for _ in range(_MR)]
        starts = [builder.gep(pa, [builder.load(builder.gep(pr, [ir.Constant(_I64, r)]))])
                  for r in range(_MR)]

        def panel_row(p):
            step = builder.gep(pb, [builder.mul(p, ir.Constant(_I64, _NR))])
            return [builder.load(builder.bitcast(builder.gep(step, [ir.Constant(_I64, 8 * v)]),
                                                 v8p), align=8) for v in range(nv)]

        two = ir.Constant(_I64, 2)
        with cgutils.for_range(builder, builder.sdiv(kc, two)) as loop:
            p0 = builder.mul(loop.index, two)
            p1 = builder.add(p0, ir.Constant(_I64, 1))
            b0, b1 = panel_row(p0), panel_row(p1)
            d0 = builder.load(builder.gep(pd, [p0]))
            d1 = builder.load(builder.gep(pd, [p1]))
            for r in range(_MR):
                a0 = _splat(builder, builder.load(builder.gep(starts[r], [d0]), align=8))
                a1 = _splat(builder, builder.load(builder.gep(starts[r], [d1]), align=8))
                for v in range(nv):
                    prod = builder.mul(builder.add(a0, b1[v]), builder.add(a1, b0[v]))
                    builder.store(builder.add(builder.load(accs[r][v]), prod), accs[r][v])
        odd = builder.icmp_signed("!=", builder.srem(kc, two), ir.Constant(_I64, 0))
        with builder.if_then(odd):
            last = builder.sub(kc, ir.Constant(_I64, 1))
            bl = panel_row(last)
            dl = builder.load(builder.gep(pd, [last]))
            for r in range(_MR):
                al = _splat(builder, builder.load(builder.gep(starts[r], [dl]), align=8))
                for v in range(nv):
                    builder.store(builder.add(builder.load(accs[r][v]), builder.mul(al, bl[v])),
                                  accs[r][v])
        cvec = [builder.load(builder.bitcast(builder.gep(pcc, [ir.Constant(_I64, 8 * v)]), v8p),
                             align=8) for v in range(nv)]
        for r in range(_MR):
            rv = _splat(builder, builder.load(builder.gep(prc, [ir.Constant(_I64, r)])))
            for v in range(nv):
                corr = builder.add(rv, cvec[v])
                builder.store(builder.sub(builder.load(accs[r][v]), corr), accs[r][v])
        _store_rows(builder, accs, pc, ldc, rows, add)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _tile_16x8(typingctx, packed, base, base_off, depth_offs, kc, dst, dst_off, ldc, rows,
               add):
    """dst[dst_off + r ldc + 0:8] (+)= sum_p packed[16 p + r] base[base_off + depth_offs[p] + 0:8]
    mod 2^64 for r < rows (<= 16), p < kc: the transposed register tile, 16 broadcast rows of
    a packed left operand [kc, 16] against 8 contiguous words of the right one.

    For a stride-1 convolution, the 8 words are 8 neighbouring output pixels of one row and
    depth_offs the kernel offsets into the padded image: no patch matrix, no packing of the
    image, and the outputs land contiguous in [O, H'*W']. Addresses as in _tile_8x16 (uintp;
    offsets in words); add is nonzero to accumulate into dst."""
    sig = types.void(types.uintp, types.uintp, types.intp, types.uintp, types.intp, types.uintp,
                     types.intp, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        packed, base, base_off, depth_offs, kc, dst, dst_off, ldc, rows, add = args
        u64p = _I64.as_pointer()
        pa = builder.inttoptr(packed, u64p)
        pb = builder.gep(builder.inttoptr(base, u64p), [base_off])
        pd = builder.inttoptr(depth_offs, u64p)
        pc = builder.gep(builder.inttoptr(dst, u64p), [dst_off])
        zero = ir.Constant(_V8, [0] * 8)
        accs = [[cgutils.alloca_once_value(builder, zero)] for _ in range(16)]
        with cgutils.for_range(builder, kc) as loop:
            p = loop.index
            d = builder.load(builder.gep(pd, [p]))
            bv = builder.load(builder.bitcast(builder.gep(pb, [d]), _V8.as_pointer()), align=8)
            step = builder.gep(pa, [builder.mul(p, ir.Constant(_I64, 16))])
            for r, (acc,) in enumerate(accs):
                av = _splat(builder, builder.load(builder.gep(step, [ir.Constant(_I64, r)]),
                                                  align=8))
                builder.store(builder.add(builder.load(acc), builder.mul(av, bv)), acc)
        _store_rows(builder, accs, pc, ldc, rows, add)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _tile_16x8_pairs(typingctx, packed, base, base_off, depth_offs, kc, rcorr, dst, dst_off,
                     ldc, rows, add):
    """_tile_16x8 with Winograd's pairs (see _tile_8x16_pairs): rcorr holds the 16 rows' pair
    sums of the packed operand over this block; the 8 columns' pair sums are accumulated here
    (one more vpmullq a pair, against 16 saved)."""
    sig = types.void(types.uintp, types.uintp, types.intp, types.uintp, types.intp, types.uintp,
                     types.uintp, types.intp, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        packed, base, base_off, depth_offs, kc, rcorr, dst, dst_off, ldc, rows, add = args
        u64p = _I64.as_pointer()
        v8p = _V8.as_pointer()
        pa = builder.inttoptr(packed, u64p)
        pb = builder.gep(builder.inttoptr(base, u64p), [base_off])
        pd = builder.inttoptr(depth_offs, u64p)
        prc = builder.inttoptr(rcorr, u64p)
        pc = builder.gep(builder.inttoptr(dst, u64p), [dst_off])
        zero = ir.Constant(_V8, [0] * 8)
        accs = [[cgutils.alloca_once_value(builder, zero)] for _ in range(16)]
        csum = cgutils.alloca_once_value(builder, zero)

        def column(p):
            d = builder.load(builder.gep(pd, [p]))
            return builder.load(builder.bitcast(builder.gep(pb, [d]), v8p), align=8)

        def packed_word(p, r):
            step = builder.gep(pa, [builder.mul(p, ir.Constant(_I64, 16))])
            return _splat(builder, builder.load(builder.gep(step, [ir.Constant(_I64, r)]),
                                                align=8))

        two = ir.Constant(_I64, 2)
        with cgutils.for_range(builder, builder.sdiv(kc, two)) as loop:
            p0 = builder.mul(loop.index, two)
            p1 = builder.add(p0, ir.Constant(_I64, 1))
            x0, x1 = column(p0), column(p1)
            builder.store(builder.add(builder.load(csum), builder.mul(x0, x1)), csum)
            for r, (acc,) in enumerate(accs):
                prod = builder.mul(builder.add(packed_word(p0, r), x1),
                                   builder.add(packed_word(p1, r), x0))
                builder.store(builder.add(builder.load(acc), prod), acc)
        odd = builder.icmp_signed("!=", builder.srem(kc, two), ir.Constant(_I64, 0))
        with builder.if_then(odd):
            last = builder.sub(kc, ir.Constant(_I64, 1))
            xl = column(last)
            for r, (acc,) in enumerate(accs):
                builder.store(builder.add(builder.load(acc), builder.mul(packed_word(last, r), xl)),
                              acc)
        cs = builder.load(csum)
        for r, (acc,) in enumerate(accs):
            rv = _splat(builder, builder.load(builder.gep(prc, [ir.Constant(_I64, r)])))
            builder.store(builder.sub(builder.load(acc), builder.add(rv, cs)), acc)
        _store_rows(builder, accs, pc, ldc, rows, add)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def _pack_panels(src, src_is_bt, p0, p1, bp):
    """bp[t, p, jj] = b[p0 + p, 16 t + jj] (0 past b's last column): the right operand's depth
    p0:p1 as 16-column panels, each contiguous. src is b [k, n] or, if src_is_bt, b.T [n, k]."""
    n = src.shape[0] if src_is_bt else src.shape[1]
    for t in range(bp.shape[0]):
        j0 = t * _NR
        cols = min(_NR, n - j0)
        panel = bp[t]
        if src_is_bt:
            for jj in range(cols):
                col = src[j0 + jj]
                for p in range(p1 - p0):
                    panel[p, jj] = col[p0 + p]
        else:
            for p in range(p1 - p0):
                row = src[p0 + p]
                dst = panel[p]
                for jj in range(cols):
                    dst[jj] = row[j0 + jj]
        for p in range(p1 - p0):
            for jj in range(cols, _NR):
                panel[p, jj] = _ZERO


@njit(cache=True, nogil=True)
def _store_tile(tile, out, i0, j0, rows, cols, add):
    """out[i0:i0+rows, j0:j0+cols] (+)= tile[:rows, :cols]."""
    for r in range(rows):
        dst = out[i0 + r]
        src = tile[r]
        if add:
            for jj in range(cols):
                dst[j0 + jj] += src[jj]
        else:
            for jj in range(cols):
                dst[j0 + jj] = src[jj]


@njit(cache=True, nogil=True)
def _pair_sums_rows(a, p0, p1, rc):
    """rc[i] = sum_q a[i, p0 + 2q] a[i, p0 + 2q + 1] over the pairs of depth p0:p1."""
    for i in range(a.shape[0]):
        row = a[i]
        acc = _ZERO
        for p in range(p0, p1 - 1, 2):
            acc += row[p] * row[p + 1]
        rc[i] = acc


@njit(cache=True, nogil=True)
def _pair_sums_panels(bp, kc, cc):
    """cc[t, jj] = sum_q bp[t, 2q, jj] bp[t, 2q + 1, jj]: the packed panels' column terms."""
    for t in range(bp.shape[0]):
        dst = cc[t]
        for jj in range(_NR):
            dst[jj] = _ZERO
        for p in range(0, kc - 1, 2):
            r0 = bp[t, p]
            r1 = bp[t, p + 1]
            for jj in range(_NR):
                dst[jj] += r0[jj] * r1[jj]


@njit(cache=True, nogil=True)
def _mm_wide(a, src, src_is_bt, out, accumulate):
    """out (+)= a @ b with 8x16 register tiles (_tile_8x16_pairs) for C-contiguous a [m, k];
    src is b [k, n] or (src_is_bt) b.T [n, k]; out C-contiguous. Depth blocks of b (even
    lengths but the last) are packed into 16-column panels; the last tile's missing rows
    re-read a valid row and are not stored, a panel narrower than 16 columns goes through a
    tile buffer."""
    m, k = a.shape
    n = src.shape[0] if src_is_bt else src.shape[1]
    if a.strides[1] != 8 or a.strides[0] != 8 * k or out.strides[1] != 8 \
            or out.strides[0] != 8 * n:
        raise ValueError("_mm_wide: a and out must be C-contiguous")
    blocks = (k + _WIDE_KC - 1) // _WIDE_KC
    kc_max = (k + blocks - 1) // blocks  # equal blocks: 784 -> 4 x 196, not 3 x 256 + 16
    if blocks > 1:
        kc_max += kc_max % 2
    panels = (n + _NR - 1) // _NR
    bp = np.empty((panels, kc_max, _NR), dtype=np.uint64)
    tile = np.empty((_MR, _NR), dtype=np.uint64)
    depth_offs = np.arange(kc_max)
    row_offs = np.empty(_MR, dtype=np.int64)
    rc = np.zeros(m + _MR, dtype=np.uint64)
    cc = np.empty((panels, _NR), dtype=np.uint64)
    for p0 in range(0, k, kc_max):
        p1 = min(p0 + kc_max, k)
        _pack_panels(src, src_is_bt, p0, p1, bp)
        _pair_sums_panels(bp, p1 - p0, cc)
        _pair_sums_rows(a, p0, p1, rc)
        add = 0 if p0 == 0 and not accumulate else 1
        for ib in range(0, m, _WIDE_MC):
            for t in range(panels):
                j0 = t * _NR
                cols = min(_NR, n - j0)
                for i0 in range(ib, min(ib + _WIDE_MC, m), _MR):
                    rows = min(_MR, m - i0)
                    for r in range(_MR):
                        row_offs[r] = (i0 + min(r, rows - 1)) * k + p0
                    if cols == _NR:
                        _tile_8x16_pairs(a.ctypes.data, row_offs.ctypes.data,
                                         depth_offs.ctypes.data, bp[t].ctypes.data, p1 - p0,
                                         rc[i0:].ctypes.data, cc[t].ctypes.data,
                                         out.ctypes.data, i0 * n + j0, n, rows, add)
                    else:
                        _tile_8x16_pairs(a.ctypes.data, row_offs.ctypes.data,
                                         depth_offs.ctypes.data, bp[t].ctypes.data, p1 - p0,
                                         rc[i0:].ctypes.data, cc[t].ctypes.data,
                                         tile.ctypes.data, 0, _NR, rows, 0)
                        _store_tile(tile, out, i0, j0, rows, cols, add)


@njit(cache=True, nogil=True)
def _mm_into(a, src, src_is_bt, out, accumulate):
    """out (+)= a @ b (src as in _mm_dot) with the CPU's tiled kernel; k >= 1."""
    if _WIDE:
        _mm_wide(a, src, src_is_bt, out, accumulate)
    else:
        _mm_dot(a, src, src_is_bt, out, accumulate)


@njit(cache=True, nogil=True)
def _mm2(a, b, out):
    """out = a @ b for C-contiguous 2-D a, b, out; picks the kernel by shape and CPU."""
    m, k = a.shape
    n = b.shape[1]
    if _WIDE:
        if m >= _WIDE_MIN_ROWS and n >= _WIDE_MIN_COLS and k >= _WIDE_MIN_DEPTH:
            _mm_wide(a, b, False, out, False)
        else:
            _mm_ikj(a, b, out)
    elif k >= _DOT_MIN_DEPTH and (m >= _DOT_MIN_ROWS or n < _IKJ_MIN_COLS):
        _mm_dot(a, b, False, out, False)
    else:
        _mm_ikj(a, b, out)


@njit(cache=True, nogil=True)
def _mm3(a, b, out):
    """out[t] = a[t] @ b[t] over a batch; an operand with batch size 1 is broadcast."""
    for t in range(out.shape[0]):
        _mm2(a[t if a.shape[0] > 1 else 0], b[t if b.shape[0] > 1 else 0], out[t])


def _as_batch(x: np.ndarray, batch: tuple[int, ...], rows: int, cols: int) -> np.ndarray:
    """x [..., rows, cols] as a C-contiguous [B or 1, rows, cols] for the batch shape `batch`."""
    if x.shape[:-2] != batch and int(np.prod(x.shape[:-2])) != 1:
        x = np.broadcast_to(x, batch + (rows, cols))
    return np.ascontiguousarray(x).reshape(-1, rows, cols)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b mod 2^64 with np.matmul semantics (1-D operands, broadcast batch dimensions)."""
    a, b = np.asarray(a), np.asarray(b)
    check_u64(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: operands must be at least 1-D")
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    m, k = a2.shape[-2:]
    if b2.shape[-2] != k:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align")
    n = b2.shape[-1]
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    drop = (slice(None),) * len(batch) + ((0,) if a.ndim == 1 else ()) \
        + ((Ellipsis, 0) if b.ndim == 1 else ())
    if m == 0 or n == 0 or k == 0 or 0 in batch:
        return np.zeros(batch + (m, n), dtype=_U64)[drop]
    if b2.ndim == 2 or int(np.prod(b2.shape[:-2])) == 1:
        # A shared right operand: stack the batch of a into rows of one product.
        a_rows = np.ascontiguousarray(np.broadcast_to(a2, batch + (m, k))).reshape(-1, k)
        out = np.empty((a_rows.shape[0], n), dtype=_U64)
        _mm2(a_rows, np.ascontiguousarray(b2.reshape(k, n)), out)
    else:
        a3 = _as_batch(a2, batch, m, k)
        b3 = _as_batch(b2, batch, k, n)
        out = np.empty((b3.shape[0], m, n), dtype=_U64)
        _mm3(a3, b3, out)
    return out.reshape(batch + (m, n))[drop]


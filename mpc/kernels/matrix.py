"""Ring matrix product on uint64: tiled numba kernels and their numpy reference.

Arithmetic is in Z_2^64: uint64 wraparound is the reduction, so every value and constant stays
np.uint64 (uint64 mixed with a signed integer becomes float64 in numpy and numba, which
silently loses low bits). Single-threaded, GIL released (see mpc.kernels).

The tiled product (`_mm_wide`) keeps an 8x16 block of the output in sixteen 512-bit
accumulators (`_tile_8x16_pairs`), written as explicit LLVM vector IR because numba's
auto-vectorizer stops at 256 bits on AVX-512 CPUs; with AVX-512DQ each 8-lane multiply is one
vpmullq, elsewhere LLVM splits it into 32-bit multiplies (still faster than the split 32-bit
kernel this replaced, measured with an AVX2 target). Winograd's inner-product pairs halve the
multiplies. Small products stay on the plain i-k-j loop (`_mm_ikj`).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_U64 = np.dtype(np.uint64)
_ZERO = np.uint64(0)

# Tuning (single core, measured on AVX-512 and on an AVX2 target): an 8x16 tile holds 16 zmm
# accumulators; a packed block of the right operand is at most _WIDE_KC deep (a 16-column
# panel of it, 32 KiB, stays in L1); rows are taken _WIDE_MC at a time (their block stays in
# L2). Below the _WIDE_MIN_* sizes the tile's padding costs more than it gives.
_MR = 8
_NR = 16
_WIDE_KC = 256
_WIDE_MC = 128
_WIDE_MIN_ROWS = 8
_WIDE_MIN_COLS = 4
_WIDE_MIN_WORK = 4096  # m * k * n


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
    LLVM vector IR: on a CPU without 512-bit lanes LLVM splits it."""
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
def _tile_16x8_pairs(typingctx, packed, base, base_off, depth_offs, kc, rcorr, dst, dst_off,
                     ldc, rows, add):
    """dst[dst_off + r ldc + 0:8] (+)= sum_p packed[16 p + r] base[base_off + depth_offs[p] + 0:8]
    mod 2^64 for r < rows (<= 16), p < kc: the transposed register tile, 16 broadcast rows of
    a packed left operand [kc, 16] against 8 contiguous words of the right one, with
    Winograd's pairs (see _tile_8x16_pairs). rcorr holds the 16 rows' pair sums of the packed
    operand over this block; the 8 columns' pair sums are accumulated here (one more multiply
    a pair, against 16 saved).

    For a stride-1 convolution, the 8 words are 8 neighbouring output pixels of one row and
    depth_offs the kernel offsets into the padded image: no patch matrix, no packing of the
    image, and the outputs land contiguous in [O, H'*W']. Addresses as in _tile_8x16 (uintp;
    offsets in words); add is nonzero to accumulate into dst."""
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
    if (k > 1 and a.strides[1] != 8) or (m > 1 and a.strides[0] != 8 * k) \
            or (n > 1 and out.strides[1] != 8) or (m > 1 and out.strides[0] != 8 * n):
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


# The split 32-bit kernel's name, same arguments (kept so that callers of it keep working).
_mm_dot = _mm_wide


@njit(cache=True, nogil=True)
def _mm2(a, b, out):
    """out = a @ b for C-contiguous 2-D a, b, out; picks the kernel by shape."""
    m, k = a.shape
    n = b.shape[1]
    if m >= _WIDE_MIN_ROWS and n >= _WIDE_MIN_COLS and m * k * n >= _WIDE_MIN_WORK:
        _mm_wide(a, b, False, out, False)
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



def matmul_accumulate(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out += a @ b mod 2^64 in place, with no temporary of the output's size when a [m, k]
    and b [k, n] are 2-D and out is a C-contiguous [m, n] (otherwise out += matmul(a, b))."""
    a, b = np.asarray(a), np.asarray(b)
    check_u64(a, b, out)
    if a.ndim == 2 and b.ndim == 2 and out.shape == (a.shape[0], b.shape[1]) \
            and a.shape[1] == b.shape[0] and out.flags.c_contiguous and out.flags.writeable:
        m, k = a.shape
        if m == 0 or k == 0 or b.shape[1] == 0:
            return out
        _mm_wide(np.ascontiguousarray(a), np.ascontiguousarray(b), False, out, True)
        return out
    out += matmul(a, b)
    return out

"""Hot ring kernels on uint64 shares: matmul, conv2d and its adjoints, Beaver combine, bit packing.

Every kernel has a plain-numpy `*_reference` that defines the result and a numba implementation
behind the public function. Arithmetic is in Z_2^64: uint64 wraparound is the reduction, so every
value and constant stays np.uint64 (uint64 mixed with a signed integer becomes float64 in numpy
and numba, which silently loses low bits).

The numba kernels are single-threaded and release the GIL: three parties may share two cores,
and in-process tests run the parties as threads, so kernel-level threading would oversubscribe.
Outputs are allocated by numpy (which reuses and madvises large buffers) and filled in place.
"""

from __future__ import annotations

import numpy as np
from numba import njit

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


def _check_u64(*arrays: np.ndarray) -> None:
    """Refuse non-uint64 input instead of letting numpy promote it (possibly to float64)."""
    for x in arrays:
        if x.dtype != _U64:
            raise TypeError(f"ring kernels take uint64 arrays, got dtype {x.dtype}")


# --------------------------------------------------------------------------------------------
# matmul
# --------------------------------------------------------------------------------------------

def matmul_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.matmul on uint64: exact mod 2^64 (numpy's integer loops wrap), but slow."""
    a, b = np.asarray(a), np.asarray(b)
    _check_u64(a, b)
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


@njit(cache=True, nogil=True)
def _mm2(a, b, out):
    """out = a @ b for C-contiguous 2-D a, b, out; picks the kernel by shape."""
    m, k = a.shape
    if k >= _DOT_MIN_DEPTH and (m >= _DOT_MIN_ROWS or b.shape[1] < _IKJ_MIN_COLS):
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
    _check_u64(a, b)
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


# --------------------------------------------------------------------------------------------
# conv2d: im2col + matmul, and the two adjoints for backward on shares
# --------------------------------------------------------------------------------------------

def _conv_out_hw(h: int, w: int, kh: int, kw: int, stride, padding) -> tuple[int, int]:
    """Output height and width of a conv; ValueError if the parameters make no sense."""
    (sh, sw), (ph, pw) = stride, padding
    if sh < 1 or sw < 1 or ph < 0 or pw < 0:
        raise ValueError(f"conv2d: bad stride {stride} or padding {padding}")
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if kh < 1 or kw < 1 or ho < 1 or wo < 1:
        raise ValueError(f"conv2d: kernel {kh}x{kw} does not fit input {h}x{w} "
                         f"with padding {padding}")
    return ho, wo


def _patches(xp: np.ndarray, di: int, dj: int, ho: int, wo: int, stride) -> np.ndarray:
    """View of the padded input seen by kernel offset (di, dj): [N, C, ho, wo]."""
    sh, sw = stride
    return xp[:, :, di:di + sh * (ho - 1) + 1:sh, dj:dj + sw * (wo - 1) + 1:sw]


def _pad(x: np.ndarray, padding) -> np.ndarray:
    """Zero-pad the two spatial axes of [N, C, H, W]."""
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def conv2d_reference(x: np.ndarray, w: np.ndarray, stride=(1, 1), padding=(0, 0)) -> np.ndarray:
    """Cross-correlation (torch conv2d semantics) mod 2^64: one einsum per kernel offset."""
    _check_u64(x, w)
    o, _, kh, kw = w.shape
    ho, wo = _conv_out_hw(x.shape[2], x.shape[3], kh, kw, stride, padding)
    xp = _pad(x, padding)
    out = np.zeros((x.shape[0], o, ho, wo), dtype=_U64)
    for di in range(kh):
        for dj in range(kw):
            out += np.einsum("nchw,oc->nohw", _patches(xp, di, dj, ho, wo, stride), w[:, :, di, dj])
    return out


def im2col_reference(x: np.ndarray, kh: int, kw: int, stride=(1, 1),
                     padding=(0, 0)) -> np.ndarray:
    """[N, C, H, W] -> [N, C*kh*kw, H'*W'], rows ordered (c, di, dj) like w.reshape(O, -1)."""
    _check_u64(x)
    n, c = x.shape[:2]
    ho, wo = _conv_out_hw(x.shape[2], x.shape[3], kh, kw, stride, padding)
    xp = _pad(x, padding)
    cols = np.empty((n, c, kh, kw, ho, wo), dtype=_U64)
    for di in range(kh):
        for dj in range(kw):
            cols[:, :, di, dj] = _patches(xp, di, dj, ho, wo, stride)
    return cols.reshape(n, c * kh * kw, ho * wo)


def col2im_reference(cols: np.ndarray, input_shape, kh: int, kw: int, stride=(1, 1),
                     padding=(0, 0)) -> np.ndarray:
    """Adjoint of im2col: scatter-add [N, C*kh*kw, H'*W'] back onto [N, C, H, W]."""
    _check_u64(cols)
    n, c, h, w = input_shape
    ph, pw = padding
    ho, wo = _conv_out_hw(h, w, kh, kw, stride, padding)
    cols = cols.reshape(n, c, kh, kw, ho, wo)
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=_U64)
    for di in range(kh):
        for dj in range(kw):
            _patches(xp, di, dj, ho, wo, stride)[...] += cols[:, :, di, dj]
    return xp[:, :, ph:ph + h, pw:pw + w].copy()


def conv2d_grad_input_reference(grad_out: np.ndarray, w: np.ndarray, input_shape,
                                stride=(1, 1), padding=(0, 0)) -> np.ndarray:
    """d<conv2d(x, w), grad_out>/dx: transposed convolution of grad_out by w."""
    _check_u64(grad_out, w)
    n, c, h, wd = input_shape
    _, _, kh, kw = w.shape
    ph, pw = padding
    ho, wo = _conv_out_hw(h, wd, kh, kw, stride, padding)
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), dtype=_U64)
    for di in range(kh):
        for dj in range(kw):
            _patches(xp, di, dj, ho, wo, stride)[...] += np.einsum(
                "nohw,oc->nchw", grad_out, w[:, :, di, dj])
    return xp[:, :, ph:ph + h, pw:pw + wd].copy()


def conv2d_grad_weight_reference(x: np.ndarray, grad_out: np.ndarray, w_shape,
                                 stride=(1, 1), padding=(0, 0)) -> np.ndarray:
    """d<conv2d(x, w), grad_out>/dw: correlation of x with grad_out, summed over the batch."""
    _check_u64(x, grad_out)
    o, c, kh, kw = w_shape
    ho, wo = _conv_out_hw(x.shape[2], x.shape[3], kh, kw, stride, padding)
    xp = _pad(x, padding)
    dw = np.empty((o, c, kh, kw), dtype=_U64)
    for di in range(kh):
        for dj in range(kw):
            dw[:, :, di, dj] = np.einsum("nohw,nchw->oc", grad_out,
                                         _patches(xp, di, dj, ho, wo, stride))
    return dw


# The numba conv kernels work one sample at a time: the sample's patch matrix goes to a
# buffer that stays in L2 and feeds the matmul at once, instead of a [N, C*kh*kw, H'*W'] array
# written to and read back from memory. `geo` is (kh, kw, sh, sw, ph, pw, ho, wo).

@njit(cache=True, nogil=True)
def _im2col_one(x, geo, out):
    """out[(c, di, dj), (oh, ow)] = zero-padded x[c, oh*sh + di - ph, ow*sw + dj - pw]."""
    kh, kw, sh, sw, ph, pw, ho, wo = geo
    nc, h, w = x.shape
    for c in range(nc):
        for di in range(kh):
            for dj in range(kw):
                row = out[(c * kh + di) * kw + dj]
                for oh in range(ho):
                    ih = oh * sh + di - ph
                    dst = row[oh * wo:(oh + 1) * wo]
                    if ih < 0 or ih >= h:
                        dst[:] = _ZERO
                        continue
                    src = x[c, ih]
                    for ow in range(wo):
                        iw = ow * sw + dj - pw
                        dst[ow] = src[iw] if 0 <= iw < w else _ZERO


@njit(cache=True, nogil=True)
def _col2im_one(cols, geo, out):
    """Adjoint of _im2col_one: out[c] = sum of the patch entries that read each pixel."""
    kh, kw, sh, sw, ph, pw, ho, wo = geo
    nc, h, w = out.shape
    for c in range(nc):
        img = out[c]
        for i in range(h):
            for j in range(w):
                img[i, j] = _ZERO
        for di in range(kh):
            for dj in range(kw):
                row = cols[(c * kh + di) * kw + dj]
                for oh in range(ho):
                    ih = oh * sh + di - ph
                    if ih < 0 or ih >= h:
                        continue
                    dst = img[ih]
                    src = row[oh * wo:(oh + 1) * wo]
                    for ow in range(wo):
                        iw = ow * sw + dj - pw
                        if 0 <= iw < w:
                            dst[iw] += src[ow]


@njit(cache=True, nogil=True)
def _im2col_batch(x, geo, out):
    """_im2col_one for every sample of the batch."""
    for n in range(x.shape[0]):
        _im2col_one(x[n], geo, out[n])


@njit(cache=True, nogil=True)
def _col2im_batch(cols, geo, out):
    """_col2im_one for every sample of the batch."""
    for n in range(out.shape[0]):
        _col2im_one(cols[n], geo, out[n])


@njit(cache=True, nogil=True)
def _conv_forward(x, w2, geo, out):
    """out[n] = w2 @ im2col(x[n]) for w2 = w.reshape(O, C*kh*kw); out is [N, O, H'*W']."""
    buf = np.empty((w2.shape[1], out.shape[2]), dtype=np.uint64)
    for n in range(x.shape[0]):
        _im2col_one(x[n], geo, buf)
        _mm2(w2, buf, out[n])


@njit(cache=True, nogil=True)
def _conv_grad_input(g, w2t, geo, out):
    """out[n] = col2im(w2^T @ g[n]) for g [N, O, H'*W'] and w2t = w.reshape(O, -1).T."""
    buf = np.empty((w2t.shape[0], g.shape[2]), dtype=np.uint64)
    for n in range(g.shape[0]):
        _mm2(w2t, g[n], buf)
        _col2im_one(buf, geo, out[n])


@njit(cache=True, nogil=True)
def _conv_grad_weight(x, g, geo, out):
    """out = sum_n g[n] @ im2col(x[n])^T; the patch matrix is already the transposed operand."""
    buf = np.empty((out.shape[1], g.shape[2]), dtype=np.uint64)
    for n in range(x.shape[0]):
        _im2col_one(x[n], geo, buf)
        _mm_dot(g[n], buf, True, out, n > 0)


def _geometry(input_shape, kh: int, kw: int, stride, padding) -> tuple[int, ...]:
    """The `geo` tuple of the numba conv kernels (plain ints, so one compiled signature)."""
    ho, wo = _conv_out_hw(input_shape[2], input_shape[3], kh, kw, stride, padding)
    return (kh, kw, int(stride[0]), int(stride[1]), int(padding[0]), int(padding[1]), ho, wo)


def _check_grad_shape(grad_out: np.ndarray, input_shape, w_shape, geo) -> None:
    """The adjoints reshape their operands, so a mismatched shape must fail loudly here."""
    want = (input_shape[0], w_shape[0], geo[6], geo[7])
    if len(input_shape) != 4 or input_shape[1] != w_shape[1] or grad_out.shape != want:
        raise ValueError(f"conv2d backward: grad_out {grad_out.shape}, input {tuple(input_shape)}"
                         f" and weight {tuple(w_shape)} do not match (grad_out should be {want})")


def im2col(x: np.ndarray, kh: int, kw: int, stride: tuple[int, int] = (1, 1),
           padding: tuple[int, int] = (0, 0)) -> np.ndarray:
    """[N, C, H, W] -> [N, C*kh*kw, H'*W'] patch matrix (rows ordered (c, di, dj)), zero padded."""
    x = np.ascontiguousarray(x)
    _check_u64(x)
    geo = _geometry(x.shape, kh, kw, stride, padding)
    out = np.empty((x.shape[0], x.shape[1] * kh * kw, geo[6] * geo[7]), dtype=_U64)
    _im2col_batch(x, geo, out)
    return out


def col2im(cols: np.ndarray, input_shape: tuple[int, int, int, int], kh: int, kw: int,
           stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Adjoint of im2col: scatter-add [N, C*kh*kw, H'*W'] onto a zero [N, C, H, W]."""
    cols = np.ascontiguousarray(cols)
    _check_u64(cols)
    geo = _geometry(input_shape, kh, kw, stride, padding)
    out = np.empty(tuple(input_shape), dtype=_U64)
    _col2im_batch(cols, geo, out)
    return out


def conv2d(x: np.ndarray, w: np.ndarray, stride: tuple[int, int] = (1, 1),
           padding: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Cross-correlation [N,C,H,W] * [O,C,kh,kw] -> [N,O,H',W'] mod 2^64 (im2col + matmul)."""
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    _check_u64(x, w)
    if x.ndim != 4 or w.ndim != 4 or x.shape[1] != w.shape[1]:
        raise ValueError(f"conv2d: input {x.shape} and weight {w.shape} do not match")
    o, _, kh, kw = w.shape
    geo = _geometry(x.shape, kh, kw, stride, padding)
    out = np.empty((x.shape[0], o, geo[6] * geo[7]), dtype=_U64)
    _conv_forward(x, w.reshape(o, -1), geo, out)
    return out.reshape(x.shape[0], o, geo[6], geo[7])


def conv2d_grad_input(grad_out: np.ndarray, w: np.ndarray,
                      input_shape: tuple[int, int, int, int], stride: tuple[int, int] = (1, 1),
                      padding: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Gradient of <conv2d(x, w), grad_out> w.r.t. x: col2im(w2^T @ grad_out[n]) per sample,
    with w2 = w.reshape(O, C*kh*kw)."""
    grad_out, w = np.ascontiguousarray(grad_out), np.asarray(w)
    _check_u64(grad_out, w)
    n, o = grad_out.shape[:2]
    geo = _geometry(input_shape, w.shape[2], w.shape[3], stride, padding)
    _check_grad_shape(grad_out, input_shape, w.shape, geo)
    w2t = np.ascontiguousarray(w.reshape(o, -1).T)
    out = np.empty(tuple(input_shape), dtype=_U64)
    _conv_grad_input(grad_out.reshape(n, o, -1), w2t, geo, out)
    return out


def conv2d_grad_weight(x: np.ndarray, grad_out: np.ndarray, w_shape: tuple[int, int, int, int],
                       stride: tuple[int, int] = (1, 1),
                       padding: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Gradient of <conv2d(x, w), grad_out> w.r.t. w: sum_n grad_out[n] @ im2col(x)[n]^T."""
    x, grad_out = np.ascontiguousarray(x), np.ascontiguousarray(grad_out)
    _check_u64(x, grad_out)
    o, c, kh, kw = w_shape
    geo = _geometry(x.shape, kh, kw, stride, padding)
    _check_grad_shape(grad_out, x.shape, w_shape, geo)
    out = np.empty((o, c * kh * kw), dtype=_U64)
    _conv_grad_weight(x, grad_out.reshape(grad_out.shape[0], o, -1), geo, out)
    return out.reshape(w_shape)


# --------------------------------------------------------------------------------------------
# Beaver multiplication combine
# --------------------------------------------------------------------------------------------

def beaver_combine_reference(d, e, a, b, c, add_de: bool) -> np.ndarray:
    """c + d*b + e*a (+ d*e) elementwise mod 2^64, with numpy broadcasting."""
    with np.errstate(over="ignore"):  # 0-d operands compute on numpy scalars, which warn
        out = c + d * b + e * a
        return out + d * e if add_de else out


@njit(cache=True, nogil=True)
def _beaver_flat(d, e, a, b, c, add_de, out):
    """Fused same-shape combine; with add_de uses d*b + e*(a + d) to save a multiply."""
    if add_de:
        for i in range(out.shape[0]):
            out[i] = c[i] + d[i] * b[i] + e[i] * (a[i] + d[i])
    else:
        for i in range(out.shape[0]):
            out[i] = c[i] + d[i] * b[i] + e[i] * a[i]


def beaver_combine(d: np.ndarray, e: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray,
                   add_de: bool) -> np.ndarray:
    """[x*y] = c + d*b + e*a (+ d*e for one party) mod 2^64 from an opened Beaver triple.

    Same-shape operands take one fused pass; broadcasting shapes fall back to numpy."""
    d, e, a, b, c = (np.asarray(v) for v in (d, e, a, b, c))
    _check_u64(d, e, a, b, c)
    if not d.shape == e.shape == a.shape == b.shape == c.shape:
        # Some operand has >= 1 dimension, so lifting 0-d ones to (1,) keeps the result shape
        # and keeps numpy on arrays (scalar uint64 arithmetic warns on wraparound).
        d, e, a, b, c = np.atleast_1d(d, e, a, b, c)
        out = np.multiply(d, b)
        out += e * (a + d) if add_de else e * a
        out += c
        return out
    flat = [np.ascontiguousarray(v).reshape(-1) for v in (d, e, a, b, c)]
    out = np.empty(c.size, dtype=_U64)
    _beaver_flat(*flat, bool(add_de), out)
    return out.reshape(c.shape)


def beaver_combine_matmul_reference(d, e, a, b, c, add_de: bool) -> np.ndarray:
    """c + d@b + a@e (+ d@e) mod 2^64 with np.matmul."""
    out = c + np.matmul(d, b) + np.matmul(a, e)
    return out + np.matmul(d, e) if add_de else out


def beaver_combine_matmul(d: np.ndarray, e: np.ndarray, a: np.ndarray, b: np.ndarray,
                          c: np.ndarray, add_de: bool) -> np.ndarray:
    """[x@y] = c + d@b + a@e (+ d@e) mod 2^64, as c + d@b + (a + d)@e: two matmuls, not three."""
    d, e, a, b, c = (np.asarray(v) for v in (d, e, a, b, c))
    _check_u64(d, e, a, b, c)
    out = c + matmul(d, b)  # c has the full (broadcast) result shape
    out += matmul(a + d if add_de else a, e)
    return out


# --------------------------------------------------------------------------------------------
# bit packing (for opening and sending boolean shares)
# --------------------------------------------------------------------------------------------

def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Flattened 0/1 (bool or uint8) values -> uint8 bytes, 8 per byte, first bit in the MSB."""
    bits = np.asarray(bits)
    if bits.dtype != np.bool_ and bits.dtype != np.uint8:
        raise TypeError(f"pack_bits takes bool or uint8, got dtype {bits.dtype}")
    return np.packbits(bits.reshape(-1).astype(np.bool_, copy=False))


def unpack_bits(packed: np.ndarray, n: int) -> np.ndarray:
    """Inverse of pack_bits: the first n bits as a uint8 0/1 array."""
    packed = np.asarray(packed, dtype=np.uint8)
    if not 0 <= n <= 8 * packed.size:
        raise ValueError(f"unpack_bits: {n} bits asked from {packed.size} bytes")
    return np.unpackbits(packed.reshape(-1), count=n)


# --------------------------------------------------------------------------------------------
# exact truncation, last step (see mpc.protocols.truncation.truncate_exact)
# --------------------------------------------------------------------------------------------

def trunc_finish_reference(c, t, m, bits: int, first: bool) -> np.ndarray:
    """[y] = [t] - (c63 ? 2^(64-bits) [m] : 0), plus for party 0 the public part
    (c_low >> bits) + 2^(63-bits) c63 - 2^(62-bits); elementwise on flat uint64 arrays."""
    top = c >> np.uint64(63)
    y = t - top * (m << np.uint64(64 - bits))
    if first:
        low = c & np.uint64((1 << 63) - 1)
        y += (low >> np.uint64(bits)) + top * np.uint64(1 << (63 - bits)) \
            - np.uint64(1 << (62 - bits))
    return y


@njit(cache=True, nogil=True)
def _trunc_finish(c, t, m, bits, first, out):
    shift = np.uint64(bits)
    scale = np.uint64(1) << (np.uint64(63) - shift)
    offset = np.uint64(1) << (np.uint64(62) - shift)
    wrap = np.uint64(64) - shift
    low_mask = (np.uint64(1) << np.uint64(63)) - np.uint64(1)
    for i in range(out.shape[0]):
        top = c[i] >> np.uint64(63)
        y = t[i]
        if top:
            y -= m[i] << wrap
        if first:
            y += ((c[i] & low_mask) >> shift) + top * scale - offset
        out[i] = y


def trunc_finish(c: np.ndarray, t: np.ndarray, m: np.ndarray, bits: int,
                 first: bool) -> np.ndarray:
    """Fused last step of the exact truncation on flat arrays (one pass instead of ~10)."""
    _check_u64(c, t, m)
    if not 1 <= bits <= 62:
        raise ValueError(f"trunc_finish: bits {bits} out of range 1..62")
    out = np.empty(c.shape, dtype=_U64)
    _trunc_finish(c, t, m, bits, first, out)
    return out


# --------------------------------------------------------------------------------------------
# comparison circuit on bit strings (see mpc.protocols.compare)
# --------------------------------------------------------------------------------------------

def compact_even_reference(x: np.ndarray) -> np.ndarray:
    """Bits 0, 2, 4, ... of each word, packed into the low half (bit 2i -> bit i)."""
    out = np.zeros_like(x)
    for i in range(32):
        out |= ((x >> np.uint64(2 * i)) & np.uint64(1)) << np.uint64(i)
    return out


@njit(cache=True, nogil=True, inline="always")
def _compact_even(v):
    v &= np.uint64(0x5555555555555555)
    v = (v | (v >> np.uint64(1))) & np.uint64(0x3333333333333333)
    v = (v | (v >> np.uint64(2))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    v = (v | (v >> np.uint64(4))) & np.uint64(0x00FF00FF00FF00FF)
    v = (v | (v >> np.uint64(8))) & np.uint64(0x0000FFFF0000FFFF)
    return (v | (v >> np.uint64(16))) & np.uint64(0x00000000FFFFFFFF)


@njit(cache=True, nogil=True)
def _compact_even_all(x, out):
    for i in range(x.shape[0]):
        out[i] = _compact_even(x[i])


def compact_even(x: np.ndarray) -> np.ndarray:
    _check_u64(x)
    out = np.empty_like(x)
    _compact_even_all(x.reshape(-1), out.reshape(-1))
    return out


def lt_level_prepare_reference(lt, eq, half: int):
    """Inputs of one tree level's AND: X = (O(eq), O(eq)), Y = (E(lt), E(eq)) as the low and
    high `half` bits, where E/O take the even/odd bits; also O(lt), the merged lt's other
    term. Reference for lt_level_masked and lt_level_finish."""
    odd_lt = compact_even_reference(lt >> np.uint64(1))
    odd_eq = compact_even_reference(eq >> np.uint64(1))
    h = np.uint64(half)
    x = odd_eq | (odd_eq << h)
    y = compact_even_reference(lt) | (compact_even_reference(eq) << h)
    return x, y, odd_lt


def and_combine_reference(d, e, a, b, c, first: bool) -> np.ndarray:
    """[x AND y] = c ^ (d & b) ^ (e & a) (^ d & e for one party) from an opened binary
    triple (d = x ^ a, e = y ^ b). Reference for lt_level_finish."""
    z = c ^ (d & b) ^ (e & a)
    if first:
        z ^= d & e
    return z


def pack_narrow(values: np.ndarray, width: int) -> np.ndarray:
    """Values of `width` bits (1, 2 or 4) packed 8/width to a byte, for the wire."""
    per = 8 // width
    v = values.astype(np.uint8).reshape(-1)
    v = np.concatenate([v, np.zeros((-v.size) % per, np.uint8)]).reshape(-1, per)
    out = np.zeros(v.shape[0], np.uint8)
    for j in range(per):
        out |= v[:, j] << np.uint8(j * width)
    return out


def unpack_narrow(packed: np.ndarray, width: int, count: int) -> np.ndarray:
    """Inverse of pack_narrow: the first `count` values, as uint64."""
    per, mask = 8 // width, np.uint8((1 << width) - 1)
    parts = [(packed >> np.uint8(j * width)) & mask for j in range(per)]
    return np.stack(parts, axis=1).reshape(-1)[:count].astype(_U64)


@njit(cache=True, nogil=True)
def _lt_masked(lt, eq, half, a_word, b_word, offset, width, out):
    h, one, off = np.uint64(half), np.uint64(1), np.uint64(offset)
    mask = np.uint64(0xFFFFFFFFFFFFFFFF) if width == 64 else (one << np.uint64(width)) - one
    n = lt.shape[0]
    for i in range(n):
        odd_eq = _compact_even(eq[i] >> one)
        x = odd_eq | (odd_eq << h)
        y = _compact_even(lt[i]) | (_compact_even(eq[i]) << h)
        out[i] = x ^ ((a_word[i] >> off) & mask)
        out[n + i] = y ^ ((b_word[i] >> off) & mask)


def lt_level_masked(lt: np.ndarray, eq: np.ndarray, half: int, a_word: np.ndarray,
                    b_word: np.ndarray, offset: int, width: int, dtype) -> np.ndarray:
    """One tree level's masked AND inputs, [X ^ a | Y ^ b] (lt_level_prepare_reference), with the
    triple's `width`-bit fields read at `offset` from a and b words; written straight in
    the wire dtype."""
    out = np.empty(2 * lt.size, dtype=dtype)
    _lt_masked(lt, eq, half, a_word, b_word, offset, width, out)
    return out


@njit(cache=True, nogil=True)
def _lt_finish(d, e, a_word, b_word, c_word, offset, width, first, lt, half, new_lt, new_eq):
    one, off, h = np.uint64(1), np.uint64(offset), np.uint64(half)
    mask = np.uint64(0xFFFFFFFFFFFFFFFF) if width == 64 else (one << np.uint64(width)) - one
    low = (one << h) - one
    for i in range(lt.shape[0]):
        a = (a_word[i] >> off) & mask
        b = (b_word[i] >> off) & mask
        dd, ee = np.uint64(d[i]), np.uint64(e[i])
        z = ((c_word[i] >> off) & mask) ^ (dd & b) ^ (ee & a)
        if first:
            z ^= dd & ee
        new_lt[i] = _compact_even(lt[i] >> one) ^ (z & low)
        new_eq[i] = z >> h


def lt_level_finish(d, e, a_word, b_word, c_word, offset: int, width: int, first: bool,
                    lt: np.ndarray, half: int):
    """From the opened d, e: z = [X AND Y] by the binary triple, then the merged
    (lt, eq) = (O(lt) ^ low half of z, high half of z)."""
    new_lt, new_eq = np.empty_like(lt), np.empty_like(lt)
    _lt_finish(d, e, a_word, b_word, c_word, offset, width, first, lt, half, new_lt, new_eq)
    return new_lt, new_eq

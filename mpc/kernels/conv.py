"""2-D convolution on uint64 (direct tiled kernels on the padded image; the adjoints by
im2col/col2im and the ring matmul), and plain-numpy references for each."""

from __future__ import annotations

import numpy as np
from numba import njit

from mpc.kernels.matrix import (_MR, _NR, _U64, _WIDE_KC, _ZERO, _mm2, _mm_wide, _tile_8x16,
                                _tile_16x8_pairs, check_u64)

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
    check_u64(x, w)
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
    check_u64(x)
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
    check_u64(cols)
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
    check_u64(grad_out, w)
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
    check_u64(x, grad_out)
    o, c, kh, kw = w_shape
    ho, wo = _conv_out_hw(x.shape[2], x.shape[3], kh, kw, stride, padding)
    xp = _pad(x, padding)
    dw = np.empty((o, c, kh, kw), dtype=_U64)
    for di in range(kh):
        for dj in range(kw):
            dw[:, :, di, dj] = np.einsum("nohw,nchw->oc", grad_out,
                                         _patches(xp, di, dj, ho, wo, stride))
    return dw


# The numba conv kernels work one sample at a time: the adjoints' patch matrix goes to a
# buffer that stays in L2 and feeds the matmul at once, instead of a [N, C*kh*kw, H'*W'] array
# written to and read back from memory; the forward kernels read the padded sample directly.
# `geo` is (kh, kw, sh, sw, ph, pw, ho, wo).

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
        _mm_wide(g[n], buf, True, out, n > 0)


# The direct kernels: no patch matrix at all. Each sample is copied into a zero-padded image;
# an output pixel's patch entry (c, di, dj) is the word at pixel_offset + depth_offset of it.
# _conv_wide (any stride) has _tile_8x16 read 8 pixels x all kernel offsets straight from the
# image through two offset tables, against the weights packed as 16-channel panels;
# _conv_runs (unit horizontal stride, the usual case) turns the tile around so that 8
# neighbouring pixels are one vector load and one vector store, with Winograd's pairs.

@njit(cache=True, nogil=True)
def _pack_weights(w2, bp):
    """bp[t, p, jj] = w2[16 t + jj, p] (0 past the last output channel)."""
    o = w2.shape[0]
    for t in range(bp.shape[0]):
        for jj in range(_NR):
            ch = t * _NR + jj
            for p in range(w2.shape[1]):
                bp[t, p, jj] = w2[ch, p] if ch < o else _ZERO


@njit(cache=True, nogil=True)
def _conv_wide(x1, x2, pair, w2, geo, out, accumulate):
    """out[n] (+)= conv(x1[n], w2[:, :D]) (+ conv(x2[n], w2[:, D:]) if pair), D = C*kh*kw, w2
    = w.reshape(O, -1) (for a pair, [w1 | w2] side by side); out is [N, O, H'*W']. Any
    stride; conv2d takes _conv_runs when the horizontal stride is 1."""
    kh, kw, sh, sw, ph, pw, ho, wo = geo
    nb, c, h, w = x1.shape
    hp, wp = h + 2 * ph, w + 2 * pw
    inputs = 2 if pair else 1
    depth = w2.shape[1]
    o = out.shape[1]
    npix = ho * wo
    img = np.zeros((inputs * c, hp, wp), dtype=np.uint64)  # the border stays zero
    depth_offs = np.empty(depth, dtype=np.int64)
    for ci in range(inputs * c):
        for di in range(kh):
            for dj in range(kw):
                depth_offs[(ci * kh + di) * kw + dj] = (ci * hp + di) * wp + dj
    pix_offs = np.empty(npix, dtype=np.int64)
    for oh in range(ho):
        for ow in range(wo):
            pix_offs[oh * wo + ow] = oh * sh * wp + ow * sw
    panels = (o + _NR - 1) // _NR
    bp = np.empty((panels, depth, _NR), dtype=np.uint64)
    _pack_weights(w2, bp)
    blocks = (depth + _WIDE_KC - 1) // _WIDE_KC
    kc_max = (depth + blocks - 1) // blocks
    tile = np.empty((_MR, _NR), dtype=np.uint64)
    row_offs = np.empty(_MR, dtype=np.int64)
    for n in range(nb):
        for ci in range(inputs * c):
            src = x1[n, ci] if ci < c else x2[n, ci - c]
            for i in range(h):
                for j in range(w):
                    img[ci, ph + i, pw + j] = src[i, j]
        dst = out[n]
        for p0 in range(0, depth, kc_max):
            kc = min(kc_max, depth - p0)
            first = p0 == 0 and not accumulate
            for t in range(panels):
                ch0 = t * _NR
                chans = min(_NR, o - ch0)
                for i0 in range(0, npix, _MR):
                    rows = min(_MR, npix - i0)
                    for r in range(_MR):
                        row_offs[r] = pix_offs[i0 + min(r, rows - 1)]
                    _tile_8x16(img.ctypes.data, row_offs.ctypes.data,
                               depth_offs[p0:].ctypes.data, bp[t, p0:].ctypes.data, kc,
                               tile.ctypes.data, 0, _NR, _MR, 0)
                    for jj in range(chans):
                        drow = dst[ch0 + jj]
                        if first:
                            for r in range(rows):
                                drow[i0 + r] = tile[r, jj]
                        else:
                            for r in range(rows):
                                drow[i0 + r] += tile[r, jj]


@njit(cache=True, nogil=True)
def _conv_runs(x1, x2, pair, w2, geo, out, accumulate):
    """_conv_wide for a unit horizontal stride, transposed: _tile_16x8_pairs multiplies 16
    output channels (broadcast weights) by runs of 8 neighbouring output pixels, read as
    vectors straight from the padded image and stored straight into out[n] (a run shorter than
    8, at the end of a row, through a small buffer)."""
    kh, kw, sh, sw, ph, pw, ho, wo = geo
    nb, c, h, w = x1.shape
    hp = h + 2 * ph
    wrow = w + 2 * pw + 8  # 8 words of slack: a short run reads past its row's end
    inputs = 2 if pair else 1
    depth = w2.shape[1]
    o = out.shape[1]
    npix = ho * wo
    img = np.zeros((inputs * c * hp, wrow), dtype=np.uint64)  # the border stays zero
    depth_offs = np.empty(depth, dtype=np.int64)
    for ci in range(inputs * c):
        for di in range(kh):
            for dj in range(kw):
                depth_offs[(ci * kh + di) * kw + dj] = (ci * hp + di) * wrow + dj
    panels = (o + _NR - 1) // _NR
    bp = np.empty((panels, depth, _NR), dtype=np.uint64)
    _pack_weights(w2, bp)
    blocks = (depth + _WIDE_KC - 1) // _WIDE_KC
    kc_max = (depth + blocks - 1) // blocks
    if blocks > 1:
        kc_max += kc_max % 2
    # the weights' pair sums (Winograd's row terms), per depth block and panel
    rc = np.zeros((blocks, panels, _NR), dtype=np.uint64)
    for blk in range(blocks):
        p0 = blk * kc_max
        for t in range(panels):
            for p in range(p0, min(p0 + kc_max, depth) - 1, 2):
                for jj in range(_NR):
                    rc[blk, t, jj] += bp[t, p, jj] * bp[t, p + 1, jj]
    short = np.empty((_NR, 8), dtype=np.uint64)
    for n in range(nb):
        for ci in range(inputs * c):
            src = x1[n, ci] if ci < c else x2[n, ci - c]
            for i in range(h):
                row = img[ci * hp + ph + i]
                for j in range(w):
                    row[pw + j] = src[i, j]
        dst = out[n]
        for blk in range(blocks):
            p0 = blk * kc_max
            kc = min(kc_max, depth - p0)
            add = 0 if p0 == 0 and not accumulate else 1
            for t in range(panels):
                ch0 = t * _NR
                chans = min(_NR, o - ch0)
                for oh in range(ho):
                    for ow0 in range(0, wo, 8):
                        base_off = oh * sh * wrow + ow0
                        if ow0 + 8 <= wo:
                            _tile_16x8_pairs(bp[t, p0:].ctypes.data, img.ctypes.data, base_off,
                                             depth_offs[p0:].ctypes.data, kc,
                                             rc[blk, t].ctypes.data, dst.ctypes.data,
                                             ch0 * npix + oh * wo + ow0, npix, chans, add)
                            continue
                        _tile_16x8_pairs(bp[t, p0:].ctypes.data, img.ctypes.data, base_off,
                                         depth_offs[p0:].ctypes.data, kc,
                                         rc[blk, t].ctypes.data, short.ctypes.data, 0, 8,
                                         chans, 0)
                        for jj in range(chans):
                            drow = dst[ch0 + jj]
                            for q in range(wo - ow0):
                                if add:
                                    drow[oh * wo + ow0 + q] += short[jj, q]
                                else:
                                    drow[oh * wo + ow0 + q] = short[jj, q]


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
    check_u64(x)
    geo = _geometry(x.shape, kh, kw, stride, padding)
    out = np.empty((x.shape[0], x.shape[1] * kh * kw, geo[6] * geo[7]), dtype=_U64)
    _im2col_batch(x, geo, out)
    return out


def col2im(cols: np.ndarray, input_shape: tuple[int, int, int, int], kh: int, kw: int,
           stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Adjoint of im2col: scatter-add [N, C*kh*kw, H'*W'] onto a zero [N, C, H, W]."""
    cols = np.ascontiguousarray(cols)
    check_u64(cols)
    geo = _geometry(input_shape, kh, kw, stride, padding)
    out = np.empty(tuple(input_shape), dtype=_U64)
    _col2im_batch(cols, geo, out)
    return out


def conv2d(x: np.ndarray, w: np.ndarray, stride: tuple[int, int] = (1, 1),
           padding: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Cross-correlation [N,C,H,W] * [O,C,kh,kw] -> [N,O,H',W'] mod 2^64 (direct kernel)."""
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    check_u64(x, w)
    if x.ndim != 4 or w.ndim != 4 or x.shape[1] != w.shape[1]:
        raise ValueError(f"conv2d: input {x.shape} and weight {w.shape} do not match")
    o, _, kh, kw = w.shape
    geo = _geometry(x.shape, kh, kw, stride, padding)
    out = np.empty((x.shape[0], o, geo[6] * geo[7]), dtype=_U64)
    (_conv_runs if geo[3] == 1 else _conv_wide)(x, x, False, w.reshape(o, -1), geo, out, False)
    return out.reshape(x.shape[0], o, geo[6], geo[7])


def conv2d_pair_accumulate(x1: np.ndarray, w1: np.ndarray, x2: np.ndarray, w2: np.ndarray,
                           out: np.ndarray, stride: tuple[int, int] = (1, 1),
                           padding: tuple[int, int] = (0, 0)) -> np.ndarray:
    """out += conv2d(x1, w1) + conv2d(x2, w2) in place (x1, x2 and w1, w2 of equal shapes;
    out a C-contiguous array of the output shape), with no full-size temporary."""
    x1, x2, w1, w2 = (np.ascontiguousarray(v) for v in (x1, x2, w1, w2))
    check_u64(x1, x2, w1, w2, out)
    if x1.ndim != 4 or w1.ndim != 4 or x1.shape[1] != w1.shape[1] or x1.shape != x2.shape \
            or w1.shape != w2.shape:
        raise ValueError(f"conv2d_pair_accumulate: inputs {x1.shape}, {x2.shape} and weights "
                         f"{w1.shape}, {w2.shape} do not match")
    o, _, kh, kw = w1.shape
    geo = _geometry(x1.shape, kh, kw, stride, padding)
    if out.shape != (x1.shape[0], o, geo[6], geo[7]) or not out.flags.c_contiguous:
        raise ValueError(f"conv2d_pair_accumulate: out {out.shape} is not the C-contiguous "
                         f"output {(x1.shape[0], o, geo[6], geo[7])}")
    w12 = np.concatenate([w1.reshape(o, -1), w2.reshape(o, -1)], axis=1)
    (_conv_runs if geo[3] == 1 else _conv_wide)(x1, x2, True, w12, geo,
                                                 out.reshape(x1.shape[0], o, -1), True)
    return out


def conv2d_grad_input(grad_out: np.ndarray, w: np.ndarray,
                      input_shape: tuple[int, int, int, int], stride: tuple[int, int] = (1, 1),
                      padding: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Gradient of <conv2d(x, w), grad_out> w.r.t. x: col2im(w2^T @ grad_out[n]) per sample,
    with w2 = w.reshape(O, C*kh*kw)."""
    grad_out, w = np.ascontiguousarray(grad_out), np.asarray(w)
    check_u64(grad_out, w)
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
    check_u64(x, grad_out)
    o, c, kh, kw = w_shape
    geo = _geometry(x.shape, kh, kw, stride, padding)
    _check_grad_shape(grad_out, x.shape, w_shape, geo)
    out = np.empty((o, c * kh * kw), dtype=_U64)
    _conv_grad_weight(x, grad_out.reshape(grad_out.shape[0], o, -1), geo, out)
    return out.reshape(w_shape)


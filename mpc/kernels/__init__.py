"""Hot ring kernels on uint64 shares, shared by every protocol: matmul, conv2d and its
adjoints, bit packing, the exact truncation's last step. (Each protocol's own fused kernels
live in its folder, e.g. mpc.protocols.dealer.kernels.)

Every kernel has a plain-numpy `*_reference` that defines the result and a numba implementation
behind the public function. Arithmetic is in Z_2^64: uint64 wraparound is the reduction, so every
value and constant stays np.uint64 (uint64 mixed with a signed integer becomes float64 in numpy
and numba, which silently loses low bits).

The numba kernels are single-threaded and release the GIL: three parties may share two cores,
and in-process tests run the parties as threads, so kernel-level threading would oversubscribe.
Outputs are allocated by numpy (which reuses and madvises large buffers) and filled in place.
"""

from mpc.kernels.bits import (compact_even, compact_even_reference, pack_bits, pack_narrow,
                              unpack_bits, unpack_narrow)
from mpc.kernels.conv import (col2im, col2im_reference, conv2d, conv2d_grad_input,
                              conv2d_pair_accumulate,
                              conv2d_grad_input_reference, conv2d_grad_weight,
                              conv2d_grad_weight_reference, conv2d_reference, im2col,
                              im2col_reference)
from mpc.kernels.matrix import check_u64, matmul, matmul_accumulate, matmul_reference
from mpc.kernels.truncation import (top_bits_packed, top_bits_packed_reference, trunc_finish,
                                    trunc_finish_bits, trunc_finish_bits_reference,
                                    trunc_finish_reference)

__all__ = ["check_u64", "col2im", "col2im_reference", "compact_even", "compact_even_reference",
           "conv2d", "conv2d_grad_input", "conv2d_pair_accumulate", "conv2d_grad_input_reference", "conv2d_grad_weight",
           "conv2d_grad_weight_reference", "conv2d_reference", "im2col", "im2col_reference",
           "matmul", "matmul_accumulate", "matmul_reference", "pack_bits", "pack_narrow", "top_bits_packed",
           "top_bits_packed_reference", "trunc_finish", "trunc_finish_bits",
           "trunc_finish_bits_reference", "trunc_finish_reference", "unpack_bits",
           "unpack_narrow"]

"""Secure multi-party computation on secret shares over Z_2^64, under one of two protocols:
"dealer" (additive shares, n >= 2 parties, a trusted dealer) or "replicated" (three
servers, honest majority, no dealer): mpc.run_local(main, 3, protocol="replicated").

    import mpc
    def main(ctx):
        x = mpc.share(ctx, np.arange(3.0) if ctx.pid == 0 else None, owner=0, shape=(3,))
        y = mpc.share(ctx, np.ones(3) if ctx.pid == 1 else None, owner=1, shape=(3,))
        return (x * y + 1).reveal()
    mpc.run_local(main, n_parties=3)     # or: mpc run -n 3 script.py
"""

from net import PeerError, PeerLost, PeerTimeout, ProtocolError

from mpc.agreement import check_same
from mpc.context import Context
from mpc.fixedpoint import FixedPoint
from mpc.functions import (divide, exp, exp_nonpositive, inv_sqrt, log, reciprocal, sigmoid,
                           sigmoid_piecewise, softmax, sqrt, tanh)
from mpc.harness import PartyFailed, run_local
from mpc.owners import input_from, reveal_to_owner
from mpc.noise import add_noise, discrete_gaussian
from mpc.piecewise import gelu
from mpc.protocols.range_check import FixedPointRangeError
from mpc.sampling import bernoulli, exact_probability
from mpc.sharing import reveal, share, share_columns, share_public, share_rows
from mpc.tensor import (SecretTensor, ShapeError, concatenate, conv2d, matmul_many, stack,
                        where)

__all__ = ["Context", "FixedPoint", "FixedPointRangeError", "PartyFailed", "PeerError", "PeerLost",
           "PeerTimeout", "ProtocolError", "SecretTensor", "ShapeError", "add_noise",
           "bernoulli", "check_same", "concatenate", "conv2d", "discrete_gaussian", "divide",
           "exact_probability", "exp", "exp_nonpositive", "gelu", "input_from", "inv_sqrt",
           "log", "matmul_many", "reciprocal", "reveal", "reveal_to_owner", "run_local",
           "share", "share_columns", "share_public", "share_rows", "sigmoid",
           "sigmoid_piecewise", "softmax", "sqrt", "stack", "tanh", "where"]

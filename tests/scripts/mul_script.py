"""Test script: each party owns one input; the product and a matmul are revealed.
With MPC_DIE_AT=<pid> that party kills itself (SIGKILL) in the middle of the product."""

import os
import signal

import numpy as np

import mpc


def main(ctx):
    x = mpc.share(ctx, np.arange(6.0) if ctx.pid == 0 else None, owner=0, shape=(6,))
    y = mpc.share(ctx, np.full(6, -0.5) if ctx.pid == 1 else None, owner=1, shape=(6,))
    if os.environ.get("MPC_DIE_AT") == str(ctx.pid):
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("MPC_DIFFERENT_CODE") == str(ctx.pid):
        z = x.square()
    else:
        z = x * y
    out = z.reveal()
    print(f"party {ctx.pid} result {out.tolist()}", flush=True)
    return out

"""Test script: party 0 shares an out-of-range value, which its encoder refuses."""

import numpy as np

import mpc


def main(ctx):
    secret = np.array([3.0, 5123456789.25])
    x = mpc.share(ctx, secret if ctx.pid == 0 else None, 0, shape=(2,))
    return x.reveal()

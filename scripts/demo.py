"""A small private computation among the parties: run with `mpc run -n 3 scripts/demo.py`.

Party 0 owns a matrix of readings, party 1 a weight vector, party 2 an offset; together they
compute weights @ readings + offset and the mean of squared readings, each input
secret-shared, nothing but the results revealed. Party 0 prints the result beside plain
numpy (which no single party could compute alone).
"""

import numpy as np

import mpc


def inputs():
    rng = np.random.default_rng(7)
    return (rng.normal(size=(4, 1000)), rng.normal(size=(1, 4)), rng.normal(size=(1, 1000)))


def main(ctx):
    readings, weights, offset = inputs()  # in a real run each party loads only its own
    owners = [0, 1 % ctx.n_parties, 2 % ctx.n_parties]
    x = mpc.share(ctx, readings if ctx.pid == owners[0] else None, owner=owners[0],
                  shape=readings.shape)
    w = mpc.share(ctx, weights if ctx.pid == owners[1] else None, owner=owners[1],
                  shape=weights.shape)
    b = mpc.share(ctx, offset if ctx.pid == owners[2] else None, owner=owners[2],
                  shape=offset.shape)
    score = (w @ x + b).reveal()
    energy = (x * x).mean(axis=1).reveal()
    if ctx.pid == 0:
        plain_score = weights @ readings + offset
        plain_energy = (readings * readings).mean(axis=1)
        print(f"{ctx.n_parties} parties: w @ x + b, first 5 -> {np.round(score[0, :5], 4)}")
        print(f"          plain numpy, first 5 -> {np.round(plain_score[0, :5], 4)}")
        print(f"  max |error| {np.max(np.abs(score - plain_score)):.2e}")
        print(f"mean(x * x) per row -> {np.round(energy, 4)}  numpy -> {np.round(plain_energy, 4)}")
    return float(np.max(np.abs(score - weights @ readings - offset)))

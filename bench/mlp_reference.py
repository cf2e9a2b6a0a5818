"""W4 in float64: the MLP SGD steps of bench.workloads' W4 replayed in the clear from the
same fixed-point inputs (images, one-hot labels, initial weights and learning rate as the
parties encode them), with a bound on how far the secret training may be from it.

The bound, in units u = 2^-16, per step and per parameter element. Within one step from
equal weights, every secret product is one exact truncation (error < 1 u: floor or floor
+ 1), the softmax is within 6 u per output (mpc.softmax), the division by the batch is one
truncation (< 1 u), ReLU is 1-Lipschitz and sums are exact. Propagating these through
Linear-ReLU-Linear-ReLU-Linear, forward then backward, with absolute values (no
cancellation assumed) and to first order (products of two errors, below u^2 relative,
dropped):

    E_z1 = 1,  E_z2 = E_z1 |W2| + 1,  E_z3 = E_z2 |W3| + 1
    E_d3 = (6 + max_row E_z3 / 2) / batch + 1         (softmax's Jacobian: row sums <= 1/2)
    E_d2 = (E_d3 |W3|^T + 1) + |d3 W3^T| [|z2| <= E_z2 u]   (where ReLU's derivative may flip)
    E_d1 = (E_d2 |W2|^T + 1) + |d2 W2^T| [|z1| <= E_z1 u]
    E_gW1 = x^T E_d1 + 1,  E_gW2 = h1^T E_d2 + E_z1^T |d2| + 1,  E_gW3 = h2^T E_d3 + E_z2^T |d3| + 1
    E_gb = sum over the batch of E_d (exact sums),  E_w = lr E_g + 1 (the update's truncation)

evaluated on the replay's own values at each step. Over several steps the sum of the
per-step bounds is not a bound: it assumes that an error already in the weights is not
amplified by later steps, and it is. Each ReLU whose input the difference moves across 0
changes a sample's gradient, and once a few do the difference between the secret training
and its replay grows 2-3 times a step (measured, replicated, one repetition of 10 steps:
1-2 units after one step, 160 after eight (181 ReLUs of the ninth flipped), 850 after ten,
while every operation of every step stayed within its own bound: products within 1 unit,
softmax within 4.1). Of 18 runs of 6 repetitions of 10 steps, one went to 1.25 times the
summed bound (1151 units in W3), the others below 0.31; 0.51 at most in 51 dealer runs.
So bench.workloads.w4_check takes one step at a time (steps=1), each from the weights
revealed after the step before, where the bound is derived: measured err_to_bound at
most 0.23 over 4,640 replicated steps and 0.34 over 4,560 dealer steps (that one a
flipped ReLU of layer 2, a term of the bound; 0.05-0.2 otherwise). The check takes the largest element of the bound for every weight (a
bound per tensor is too tight: an error in one layer moves the others' gradients).
"""

from __future__ import annotations

import numpy as np

SOFTMAX_UNITS = 6.0  # mpc.softmax's stated error bound per output, in units of 2^-16


def sgd_replay(params: list[np.ndarray], x: np.ndarray, y: np.ndarray, lr: float,
               steps: int, frac_bits: int = 16) -> tuple[list[np.ndarray], float]:
    """`steps` full-batch SGD steps of Linear-ReLU-Linear-ReLU-Linear with softmax
    cross-entropy (mean over the batch) on x [batch, in] and one-hot y; `params` is
    [W1, b1, W2, b2, W3, b3] with W of shape [in, out] as nn.Linear holds it. The ReLU's
    derivative at 0 is 1, as SecretTensor.relu(with_grad=True) gives. Returns the
    parameters after the steps and the bound (real units) on the secret training's error
    (module docstring)."""
    u = 2.0 ** -frac_bits
    w1, b1, w2, b2, w3, b3 = (np.array(p, dtype=np.float64) for p in params)
    bound = 0.0
    for _ in range(steps):
        z1 = x @ w1 + b1
        h1 = np.maximum(z1, 0)
        z2 = h1 @ w2 + b2
        h2 = np.maximum(z2, 0)
        z3 = h2 @ w3 + b3
        e = np.exp(z3 - z3.max(axis=1, keepdims=True))
        d3 = (e / e.sum(axis=1, keepdims=True) - y) / x.shape[0]
        g2 = d3 @ w3.T  # the gradient at z2 before ReLU's derivative, and so on
        d2 = g2 * (z2 >= 0)
        g1 = d2 @ w2.T
        d1 = g1 * (z1 >= 0)
        grads = [x.T @ d1, d1.sum(0), h1.T @ d2, d2.sum(0), h2.T @ d3, d3.sum(0)]
        bound += lr * _gradient_error_units(x, z1, h1, z2, h2, z3, g1, g2, d2, d3, w2, w3,
                                            u) + 1
        w1, b1, w2, b2, w3, b3 = (p - lr * g for p, g in
                                  zip((w1, b1, w2, b2, w3, b3), grads))
    return [w1, b1, w2, b2, w3, b3], bound * u


def _gradient_error_units(x, z1, h1, z2, h2, z3, g1, g2, d2, d3, w2, w3, u) -> float:
    """The largest element of the one-step gradient error bound E_g (module docstring)."""
    e_z1 = np.ones_like(z1)
    e_z2 = e_z1 @ np.abs(w2) + 1
    e_z3 = e_z2 @ np.abs(w3) + 1
    e_d3 = np.broadcast_to((SOFTMAX_UNITS + e_z3.max(axis=1, keepdims=True) / 2) / x.shape[0]
                           + 1, d3.shape)
    e_d2 = e_d3 @ np.abs(w3).T + 1 + np.abs(g2) / u * (np.abs(z2) <= e_z2 * u)
    e_d1 = e_d2 @ np.abs(w2).T + 1 + np.abs(g1) / u * (np.abs(z1) <= e_z1 * u)
    parts = [np.abs(x).T @ e_d1 + 1, e_d1.sum(0),
             h1.T @ e_d2 + e_z1.T @ np.abs(d2) + 1, e_d2.sum(0),
             h2.T @ e_d3 + e_z2.T @ np.abs(d3) + 1, e_d3.sum(0)]
    return max(float(p.max()) for p in parts)

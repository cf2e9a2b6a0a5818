"""`check_op`: run an op on shares for every party and compare it with numpy."""

import numpy as np

import mpc

ULP = 2.0 ** -16


def shared_inputs(ctx, arrays):
    """Share arrays[i] from party i % n (every party knows the shapes)."""
    return [mpc.share(ctx, a if ctx.pid == i % ctx.n_parties else None,
                      owner=i % ctx.n_parties, shape=a.shape) for i, a in enumerate(arrays)]


def _reveal_all(ctx, arrays, mpc_fn):
    return mpc_fn(*shared_inputs(ctx, arrays)).reveal()


def run_op(arrays, mpc_fn, n_parties=2, provider="dealer", **options):
    """Every party's revealed result of mpc_fn on shared arrays (each checked equal)."""
    outs = mpc.run_local(_reveal_all, n_parties, args=(arrays, mpc_fn), provider=provider,
                         **options)
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    return outs[0]


def check_op(arrays, np_fn, mpc_fn, tol_ulps, n_parties=2, provider="dealer", **options):
    """Assert |mpc_fn(shares) - np_fn(arrays)| <= tol_ulps * 2^-f; return the max error."""
    got = run_op(arrays, mpc_fn, n_parties, provider, **options)
    want = np_fn(*arrays)
    assert got.shape == np.shape(want), (got.shape, np.shape(want))
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    assert err <= tol_ulps * ULP, f"max error {err / ULP:.2f} ulps > {tol_ulps}"
    return err

"""`check_op`: run an op on shares for every party and compare it with numpy."""

import numpy as np
import pytest

import mpc

ULP = 2.0 ** -16

# (parties, protocol) for the tests that run under every protocol
SETTINGS = [pytest.param(2, "dealer", id="dealer-2p"), pytest.param(3, "dealer", id="dealer-3p"),
            pytest.param(3, "replicated", id="replicated-3p")]
# (parties, protocol, provider): the dealer protocol's providers too
PROVIDED_SETTINGS = [pytest.param(n, "dealer", provider, id=f"dealer-{n}p-{provider}")
                     for n in (2, 3) for provider in ("dealer", "insecure-seeded")] \
    + [pytest.param(3, "replicated", "dealer", id="replicated-3p")]


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


def checker(n_parties, protocol="dealer", provider="dealer"):
    """check_op with the setting bound: check(arrays, np_fn, mpc_fn, tol_ulps)."""
    def check(arrays, np_fn, mpc_fn, tol_ulps, **options):
        return check_op(arrays, np_fn, mpc_fn, tol_ulps, n_parties, provider,
                        protocol=protocol, **options)
    return check


def split_shares(x_ring: np.ndarray, n_parties: int, protocol: str, rng) -> list[np.ndarray]:
    """Each party's share of the uint64 array x in `protocol`'s layout, made here (numpy
    randomness, fine for tests) independently of the protocol's own input step."""
    def uniform():
        return rng.integers(0, 2**64, size=x_ring.shape, dtype=np.uint64, endpoint=False)
    if protocol == "replicated":
        c0, c1 = uniform(), uniform()
        comps = [c0, c1, x_ring - c0 - c1]
        return [np.stack([comps[i], comps[(i + 1) % 3]]) for i in range(3)]
    shares = [uniform() for _ in range(n_parties - 1)]
    return shares + [x_ring - sum(shares, np.zeros_like(x_ring))]

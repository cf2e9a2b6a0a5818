"""Plain .npz models in and out: a model revealed to one party is ordinary numpy, a plain
model loaded by one party is evaluated privately with the plain model's accuracy, and
weights that do not fit are refused with every difference named."""

import numpy as np
import pytest

import mpc
import nn
from nn.io import load_npz, save_npz
from nn.plain import breast_cancer


def share_from_0(ctx, value):
    return mpc.share(ctx, value if ctx.pid == 0 else None, 0, shape=value.shape)


def _round_trip(ctx, path):
    model = nn.Sequential(nn.Linear(ctx, 4, 3, seed=1), nn.ReLU(), nn.Linear(ctx, 3, 2, seed=2))
    return save_npz(model, path, to=1)


def test_save_reveals_to_one_party_as_plain_numpy(tmp_path):
    path = tmp_path / "model.npz"
    got = mpc.run_local(_round_trip, 2, args=(str(path),))
    assert got[0] is None and set(got[1]) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    with np.load(path) as saved:
        rng = np.random.default_rng(1)
        bound = 1 / np.sqrt(4)
        np.testing.assert_allclose(saved["0.weight"], rng.uniform(-bound, bound, (4, 3)),
                                   atol=2 ** -16)
        assert saved["2.weight"].shape == (3, 2)


def _evaluate_private(ctx, weights, xte, yte):
    model = nn.Linear(ctx, xte.shape[1], 1, seed=0)
    load_npz(model, weights if ctx.pid == 1 else None, owner=1)  # party 1's secret model
    return nn.accuracy(model, share_from_0(ctx, xte), share_from_0(ctx, yte))


def test_a_plain_model_is_evaluated_privately():
    xtr, xte, ytr, yte = breast_cancer()
    w, *_ = np.linalg.lstsq(np.c_[xtr, np.ones(len(xtr))], ytr * 2 - 1, rcond=None)
    weights = {"weight": w[:-1], "bias": w[-1]}
    want = float(((xte @ weights["weight"] + weights["bias"] > 0) == yte).mean())
    got = mpc.run_local(_evaluate_private, 3, args=(weights, xte, yte))
    assert got == [want] * 3


def _load_public(ctx, weights):
    model = nn.Linear(ctx, 2, 1)
    load_npz(model, weights)
    return model(mpc.share_public(ctx, np.eye(2))).reveal()


def test_public_weights_and_misfits():
    weights = {"weight": np.array([[2.0], [3.0]]), "bias": np.array([0.5])}
    np.testing.assert_allclose(mpc.run_local(_load_public, 2, args=(weights,))[0],
                               [[2.5], [3.5]])
    with pytest.raises(mpc.PartyFailed, match=r"bias: missing; weight: shape \(3, 1\)"):
        mpc.run_local(_load_public, 2, args=({"weight": np.ones((3, 1))},))

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
        np.testing.assert_allclose(saved["0.weight"], rng.uniform(-bound, bound, (4, 3)).T,
                                   atol=2 ** -16)  # PyTorch's [out, in]
        assert saved["2.weight"].shape == (2, 3)
        assert str(saved["__format__"]) == "mpc-dl/2"


def _evaluate_private(ctx, weights, xte, yte):
    model = nn.Linear(ctx, xte.shape[1], 1, seed=0)
    load_npz(model, weights if ctx.pid == 1 else None, owner=1, layout="torch")  # party 1's
    return nn.accuracy(model, share_from_0(ctx, xte), share_from_0(ctx, yte))


def test_a_plain_model_is_evaluated_privately():
    xtr, xte, ytr, yte = breast_cancer()
    w, *_ = np.linalg.lstsq(np.c_[xtr, np.ones(len(xtr))], ytr * 2 - 1, rcond=None)
    weights = {"weight": w[:-1].T, "bias": w[-1]}  # as torch.nn.Linear(30, 1) holds it
    want = float(((xte @ weights["weight"].T + weights["bias"] > 0) == yte).mean())
    got = mpc.run_local(_evaluate_private, 3, args=(weights, xte, yte))
    assert got == [want] * 3


def _load_public(ctx, weights, layout="torch", outputs=1):
    model = nn.Linear(ctx, 2, outputs)
    load_npz(model, weights, layout=layout)
    return model(mpc.share_public(ctx, np.eye(2))).reveal()


def test_public_weights_and_misfits():
    weights = {"weight": np.array([[2.0, 3.0]]), "bias": np.array([0.5])}
    np.testing.assert_allclose(mpc.run_local(_load_public, 2, args=(weights,))[0],
                               [[2.5], [3.5]])
    with pytest.raises(mpc.PartyFailed, match=r"bias: missing; weight: shape \(1, 3\) "
                                              r"\(\[out, in\]\), the model has \(1, 2\)"):
        mpc.run_local(_load_public, 2, args=({"weight": np.ones((1, 3))},))


def _save_then_load(ctx, path):
    square = nn.Linear(ctx, 2, 2, weight=np.array([[1.0, 2.0], [3.0, 4.0]]), bias=np.zeros(2))
    save_npz(nn.Sequential(square), path, to=0)
    loaded = nn.Sequential(nn.Linear(ctx, 2, 2, seed=9))
    load_npz(loaded, path if ctx.pid == 0 else None, owner=0)  # the marker says the layout
    return loaded.layers[0].weight.value.reveal()


def test_a_square_weight_round_trips_and_is_stored_as_torch_does(tmp_path):
    path = tmp_path / "square.npz"
    got = mpc.run_local(_save_then_load, 2, args=(str(path),))[0]
    np.testing.assert_allclose(got, [[1.0, 2.0], [3.0, 4.0]])  # nn's [in, out]
    with np.load(path) as saved:  # torch's [out, in]: y = x @ W.T + b
        np.testing.assert_allclose(saved["0.weight"], [[1.0, 3.0], [2.0, 4.0]])


def test_files_without_the_marker_need_their_layout_named(tmp_path):
    square = {"weight": np.array([[1.0, 2.0], [3.0, 4.0]]), "bias": np.zeros(2)}
    with pytest.raises(mpc.PartyFailed, match="no format marker.*layout='torch'"):
        mpc.run_local(_load_public, 2, args=(square, None, 2))
    torch_style = mpc.run_local(_load_public, 2, args=(square, "torch", 2))[0]
    old_style = mpc.run_local(_load_public, 2, args=(square, "in_out", 2))[0]
    np.testing.assert_allclose(torch_style, square["weight"].T)  # rows of eye(2) @ W.T
    np.testing.assert_allclose(old_style, square["weight"])
    with pytest.raises(mpc.PartyFailed, match="layout='sideways': expected one of"):
        mpc.run_local(_load_public, 2, args=(square, "sideways", 2))
    marked = dict(square, __format__="mpc-dl/1")
    with pytest.raises(mpc.PartyFailed, match="format is 'mpc-dl/1'"):
        mpc.run_local(_load_public, 2, args=(marked, None, 2))


def _batchnorm_state(ctx, state):
    model = nn.Sequential(nn.Linear(ctx, 2, 2), nn.BatchNorm1d(ctx, 2))
    load_npz(model, state, layout="torch")
    model.eval()
    return model(mpc.share_public(ctx, np.eye(2))).reveal()


def test_a_torch_state_dict_with_batchnorm_statistics_loads():
    """What torch.save(model.state_dict()) holds, as numpy: the running statistics are
    buffers and load with the weights; the step counter is not a weight and is ignored."""
    state = {"0.weight": np.array([[1.0, 2.0], [3.0, 4.0]]), "0.bias": np.zeros(2),
             "1.weight": np.array([2.0, 1.0]), "1.bias": np.array([0.5, 0.0]),
             "1.running_mean": np.array([1.0, 2.0]), "1.running_var": np.array([4.0, 1.0]),
             "1.num_batches_tracked": np.array(7)}
    got = mpc.run_local(_batchnorm_state, 2, args=(state,))[0]
    z = np.eye(2) @ state["0.weight"].T
    want = (z - state["1.running_mean"]) / np.sqrt(state["1.running_var"] + 1e-5) * \
        state["1.weight"] + state["1.bias"]
    np.testing.assert_allclose(got, want, atol=1e-3)

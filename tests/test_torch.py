"""PyTorch round trips, where PyTorch is installed (skipped otherwise): torch.onnx.export's
file runs on shares as torch runs the model; a state_dict loads with load_npz and
save_npz's file loads into torch, square weights included."""

import inspect

import numpy as np
import pytest

import mpc
import nn

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
ULP = 2.0 ** -16


def _torch_cnn():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with torch.no_grad():  # running statistics off their 0 and 1
        model(torch.randn(16, 1, 8, 8))
    return model.eval()


def _export(model, path, x):
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters \
        else {}
    torch.onnx.export(model, torch.tensor(x, dtype=torch.float32), str(path), opset_version=17,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, **legacy)


def _run_imported(ctx, path, x):
    model = nn.from_onnx(path if ctx.pid == 0 else None, ctx, owner=0)
    xs = mpc.share(ctx, x if ctx.pid == 1 else None, 1, shape=x.shape)
    return model(xs).reveal()


def test_torch_onnx_export_runs_on_shares(tmp_path):
    model = _torch_cnn()
    x = np.random.default_rng(0).normal(0, 1, (5, 1, 8, 8))
    path = tmp_path / "cnn.onnx"
    _export(model, path, x)
    want = model(torch.tensor(x, dtype=torch.float32)).detach().numpy()
    got = mpc.run_local(_run_imported, 2, args=(str(path), x))[0]
    # BatchNorm's inverse square root (4 units + 5e-5 relative) through the Linear layer
    assert np.abs(got - want).max() <= 256 * ULP


def _square_mlp():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))


def _load_state(ctx, state, x):
    model = nn.Sequential(nn.Linear(ctx, 4, 4), nn.ReLU(), nn.Linear(ctx, 4, 3))
    nn.load_npz(model, state, layout="torch")
    out = model(mpc.share_public(ctx, x)).reveal()
    return out, nn.save_npz(model, "unused.npz", to=None)


def test_state_dicts_both_ways_with_a_square_weight(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = _square_mlp()
    state = {k: v.detach().numpy().astype(np.float64) for k, v in model.state_dict().items()}
    x = np.random.default_rng(1).normal(0, 1, (6, 4))
    ours, saved = mpc.run_local(_load_state, 2, args=(state, x))[0]
    want = model(torch.tensor(x, dtype=torch.float32)).detach().numpy()
    assert np.abs(ours - want).max() <= 16 * ULP
    back = _square_mlp()
    back.load_state_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in saved.items()})
    np.testing.assert_allclose(back(torch.tensor(x, dtype=torch.float32)).detach().numpy(),
                               want, atol=16 * ULP)

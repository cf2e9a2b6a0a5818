"""The private-inference demo: party 0's ONNX model, party 1's images, predictions to
party 1 only, with the accuracy onnxruntime gets from the same model and images."""

import runpy
from pathlib import Path

import pytest

import mpc
from mpc.launcher import ScriptTarget
from nn import plain

pytest.importorskip("onnxruntime")
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "private_inference.py"


def test_only_the_data_owner_learns_the_predictions(tmp_path):
    demo = runpy.run_path(str(SCRIPT))
    xtr, _, ytr, _ = plain.digits()
    path = tmp_path / "cnn.onnx"
    demo["write_onnx"](demo["train_plain_cnn"](xtr.reshape(-1, 1, 8, 8), ytr), path)
    got = mpc.run_local(ScriptTarget(SCRIPT, [str(path)]), 3)
    assert got[0] is None and got[2] is None  # the model's owner and the helper: nothing
    assert got[1]["onnxruntime"] > 0.9
    assert abs(got[1]["private"] - got[1]["onnxruntime"]) <= 1 / 360 + 1e-9  # one image


def test_a_wrong_model_path_stops_every_party_with_its_name(tmp_path):
    with pytest.raises(mpc.PartyFailed, match=r"party 0's model: FileNotFoundError: "
                                              r"from_onnx: no ONNX file at '.*nowhere.onnx'"):
        mpc.run_local(ScriptTarget(SCRIPT, [str(tmp_path / "nowhere.onnx")]), 3)


def test_owners_who_do_not_compute(tmp_path):
    """A model's owner and a data's owner outside the parties, as separate processes over
    CURVE: the data's owner alone gets the predictions, those onnxruntime makes; the
    parties open only the model's description."""
    import subprocess
    import sys

    import numpy as np

    import nn
    from mpc.launcher import make_local_cluster
    from onnx_models import run_ort, small_cnn

    sys.path.insert(0, str(SCRIPT.parent))
    from outsourced_demo import _wait_all

    config = str(make_local_cluster(tmp_path, 3, owners=["modelco", "clinic"]))
    model = small_cnn(np.random.default_rng(0))
    x = np.random.default_rng(1).normal(0, 1, (20, 1, 6, 6))
    nn.onnx_to_npz(model, tmp_path / "model.npz")
    np.savez(tmp_path / "images.npz", x=x)
    cli = [sys.executable, "-m", "mpc.cli"]
    script = str(SCRIPT.parent / "outsourced_inference.py")
    commands = {"dealer": cli + ["dealer", "--config", config],
                "modelco": cli + ["share", "--config", config, "--owner", "modelco",
                                  str(tmp_path / "model.npz")],
                "clinic": cli + ["share", "--config", config, "--owner", "clinic", "--receive",
                                 str(tmp_path / "predicted.npz"), str(tmp_path / "images.npz")]}
    for pid in range(3):
        commands[f"party {pid}"] = cli + ["party", "--config", config, "--id", str(pid), script,
                                          "modelco", "clinic"]
    root = SCRIPT.parents[1]
    procs = {who: subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
             for who, cmd in commands.items()}
    outputs = _wait_all(procs, 240.0)
    with np.load(tmp_path / "predicted.npz") as got:
        predicted = got["predicted"]
    want = run_ort(model, x)
    assert (predicted.argmax(axis=1) == want.argmax(axis=1)).mean() >= 0.95  # near-ties
    for pid in range(3):
        ops = [line.split()[0] for line in outputs[f"party {pid}"][1].splitlines()
               if line.startswith("    ")]
        assert "owner-output" in ops and "reveal" not in ops, ops  # opened: onnx-plan only

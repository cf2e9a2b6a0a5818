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

"""Outsourced training with owners and parties as separate processes (real ZeroMQ, CURVE):
owners share with `mpc share`, the parties train, and only the named owner gets the model.
Bad owner input is refused before anything is sent."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import outsourced_demo  # noqa: E402
from mpc.launcher import make_local_cluster  # noqa: E402


@pytest.mark.parametrize("protocol", ["dealer", "replicated"])
def test_outsourced_training_reveals_the_model_to_the_named_owner_only(protocol):
    result = outsourced_demo.run(epochs=2, timeout=240.0, protocol=protocol)
    assert abs(result["test_acc"] - result["test_acc_float64"]) <= 0.01, result
    assert ("dealer" in result["outputs"]) == (protocol == "dealer")
    for who, (out, err) in result["outputs"].items():
        if who.startswith("party"):  # the per-operation summary of what each party sent
            ops = [line.split()[0] for line in err.splitlines() if line.startswith("    ")]
            assert "owner-output" in ops and "guard" in ops, err
            assert not {"reveal", "open"} & set(ops), f"{who} opened something: {ops}"


def _share(config, owner, data_file):
    return subprocess.run([sys.executable, "-m", "mpc.cli", "share", "--config", config,
                           "--owner", owner, data_file], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_bad_owner_input_is_refused_before_connecting(tmp_path):
    config = str(make_local_cluster(tmp_path, 2, owners=["clinic"]))
    np.savez(tmp_path / "bad.npz", x=np.array([1.0, np.nan]))
    out = _share(config, "clinic", str(tmp_path / "bad.npz"))  # no party is running
    assert out.returncode == 1 and "array 'x'" in out.stderr and "NaN" in out.stderr, out.stderr
    out = _share(config, "nobody", str(tmp_path / "bad.npz"))
    assert out.returncode == 1 and "no owner named 'nobody'" in out.stderr, out.stderr

"""Outsourced training on this machine: two hospitals that do not compute, three parties
and a dealer that do, each its own OS process talking CURVE-encrypted ZeroMQ; with
`--protocol replicated`, three servers and no dealer.

    python scripts/outsourced_demo.py [epochs] [--protocol replicated]

Each hospital holds half of the breast-cancer training rows and runs
`mpc share --config cluster.toml --owner hospital_X its_rows.npz`; hospital_a adds
`--receive model.npz` and is the only one that ever sees the trained model. The demo then
scores that model on the test split next to the same training in plain float64.
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mpc.launcher import make_local_cluster  # noqa: E402
from mpc.protocols import needs_dealer  # noqa: E402
from nn.plain import breast_cancer, logistic_regression_accuracy  # noqa: E402

OWNERS = ["hospital_a", "hospital_b"]
N_PARTIES = 3


def run(epochs: int = 10, timeout: float = 300.0, protocol: str = "dealer") -> dict:
    """Run the whole deployment; returns the accuracies and the processes' outputs."""
    xtr, xte, ytr, yte = breast_cancer()
    mpc_cmd = [sys.executable, "-m", "mpc.cli"]
    with tempfile.TemporaryDirectory(prefix="mpc-outsourced-") as tmp:
        tmp = Path(tmp)
        with_dealer = needs_dealer(protocol)
        config = str(make_local_cluster(tmp, N_PARTIES, owners=OWNERS, with_dealer=with_dealer,
                                        protocol=protocol))
        for owner, rows in zip(OWNERS, np.array_split(np.arange(len(xtr)), len(OWNERS))):
            np.savez(tmp / f"{owner}.npz", x=xtr[rows], y=ytr[rows])
        script = str(ROOT / "scripts" / "train_outsourced.py")
        commands = {"dealer": mpc_cmd + ["dealer", "--config", config]} if with_dealer else {}
        for pid in range(N_PARTIES):
            commands[f"party {pid}"] = mpc_cmd + ["party", "--config", config, "--id", str(pid),
                                                  script, OWNERS[0], str(epochs)]
        for owner in OWNERS:
            receive = ["--receive", str(tmp / "model.npz")] if owner == OWNERS[0] else []
            commands[owner] = mpc_cmd + ["share", "--config", config, "--owner", owner,
                                         *receive, str(tmp / f"{owner}.npz")]
        start = time.perf_counter()
        procs = {who: subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
                 for who, cmd in commands.items()}
        outputs = _wait_all(procs, timeout)
        seconds = time.perf_counter() - start
        with np.load(tmp / "model.npz") as model:
            w, b = model["weight"], model["bias"]
    plain = logistic_regression_accuracy(xtr, ytr, xte, yte, epochs=epochs, batch_size=32,
                                         lr=0.1)
    return {"test_acc": float(((xte @ w + b > 0) == yte).mean()), "test_acc_float64": plain,
            "seconds": seconds, "outputs": outputs}


def _wait_all(procs: dict, timeout: float) -> dict:
    """Every process's (stdout, stderr); all are killed and the failure raised if one
    fails or the deadline passes."""
    deadline, outputs = time.monotonic() + timeout, {}
    try:
        for who, proc in procs.items():
            outputs[who] = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        failed = [who for who, proc in procs.items() if proc.returncode != 0]
        if failed:
            raise RuntimeError("\n".join(f"{who} exited with {procs[who].returncode}:\n"
                                         f"{outputs[who][1][-2000:]}" for who in failed))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return outputs


if __name__ == "__main__":
    args = sys.argv[1:]
    chosen = "dealer"
    if "--protocol" in args:
        at = args.index("--protocol")
        chosen = args[at + 1]
        del args[at:at + 2]
    result = run(int(args[0]) if args else 10, protocol=chosen)
    for who, (out, err) in result["outputs"].items():
        for line in (out + err).splitlines():
            if line.startswith(("owner", "trained")):
                print(f"[{who}] {line}")
    print(f"hospital_a's model: test accuracy {result['test_acc']:.3f} (float64 "
          f"{result['test_acc_float64']:.3f}); whole deployment {result['seconds']:.1f} s")

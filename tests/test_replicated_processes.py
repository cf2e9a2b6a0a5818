"""The replicated protocol with three real processes over ZeroMQ with CURVE and no dealer:
the launcher, one party per terminal from a cluster file that names the protocol, owners,
end-to-end training, a killed server, different code, a wrong key; and what is refused
before anything runs (n != 3, a plaintext link, a [dealer] entry, local truncation)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mpc
from mpc.config import load_config
from mpc.launcher import make_local_cluster, open_mesh, run_processes

SCRIPT = str(Path(__file__).parent / "scripts" / "mul_script.py")
KILL = str(Path(__file__).parent / "scripts" / "kill_script.py")
EXPECTED = [0.0, -0.5, -1.0, -1.5, -2.0, -2.5]


def product(ctx):
    rng = np.random.default_rng(ctx.pid)
    x = mpc.share(ctx, rng.normal(size=(30, 40)) if ctx.pid == 0 else None, 0, shape=(30, 40))
    y = mpc.share(ctx, rng.normal(size=(40, 40)) if ctx.pid == 1 else None, 1, shape=(40, 40))
    before = ctx.stats.snapshot()
    z = x @ y
    used = ctx.stats.snapshot()
    return (z.reveal(), used.bytes_sent - before.bytes_sent, used.rounds - before.rounds,
            sorted(ctx.stats.as_dict()["by_op"]))


def test_three_processes_and_no_dealer():
    results = run_processes(product, 3, protocol="replicated", timeout=30)
    x = np.random.default_rng(0).normal(size=(30, 40))
    y = np.random.default_rng(1).normal(size=(40, 40))
    for z, _, _, ops in results:
        assert np.max(np.abs(z - x @ y)) < 40 * 4 * 2**-16
        assert "dealer" not in ops
    # the fused product of 1200 >= SPLIT_FROM outputs: every party plays every role on a
    # third of them, 40.375 bytes per output element in all
    # (mpc.protocols.replicated.truncation), 2 rounds each (headers on top); the inner
    # dimension 40 is free
    out = 30 * 40
    for sent in (r[1] for r in results):
        assert 40.375 * out / 3 <= sent <= 40.375 * out / 3 + 400
    assert [r[2] for r in results] == [2, 2, 2]


def cli(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "mpc", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def run_cluster(tmp_path, script=SCRIPT, env=None, timeout=30.0):
    """The three servers as `mpc party` processes; `timeout` is the cluster's peer timeout
    (long by default: on a loaded machine a slow peer is not a dead one)."""
    config = make_local_cluster(tmp_path, 3, timeout=timeout, with_dealer=False,
                                protocol="replicated")
    parties = [cli("party", "--config", str(config), "--id", str(i), script, env=env)
               for i in range(3)]
    return [p.communicate(timeout=90) + (p.returncode,) for p in parties]


def test_one_party_per_terminal_from_a_replicated_cluster_file(tmp_path):
    for pid, (out, err, code) in enumerate(run_cluster(tmp_path)):
        assert code == 0, err
        assert f"party {pid} result {EXPECTED}" in out


START_UP = 60  # seconds: three interpreters importing numpy and numba on a loaded machine


def test_a_killed_server_is_named_by_the_other_two(tmp_path):
    start = time.monotonic()
    outs = run_cluster(tmp_path, env={"MPC_DIE_AT": "2"}, timeout=10.0)
    assert time.monotonic() - start < START_UP
    assert outs[2][2] == -9
    for out, err, code in outs[:2]:
        assert code == 1 and ("peer 2" in err or "party 2" in err), err


@pytest.mark.parametrize("victim,point", [(1, "mul"), (0, "compare"), (2, "train")])
def test_kill_sweep(tmp_path, victim, point):
    """Each other server exits with an error naming the killed one (PeerLost at once, or
    PeerTimeout within the cluster's 10 s), no dealer to wait for."""
    start = time.monotonic()
    outs = run_cluster(tmp_path, KILL, env={"MPC_KILL_AT": f"{victim}:{point}"}, timeout=10.0)
    assert time.monotonic() - start < START_UP
    assert outs[victim][2] == -9
    for who, (out, err, code) in enumerate(outs):
        if who != victim:
            assert code == 1 and "done" not in out, (who, err)
            assert f"peer {victim}" in err or f"party {victim}" in err, (who, err)


LOOP = str(Path(__file__).parent / "scripts" / "loop_script.py")


def _frozen_server(tmp_path, victim: int, freeze_for: float | None):
    """The three servers (peer timeout 120 s, heartbeat 2 s); `victim` is stopped (SIGSTOP)
    mid-run and resumed after `freeze_for` s (None: never). The other two's outcomes."""
    config = make_local_cluster(tmp_path, 3, timeout=120.0, heartbeat=2.0, with_dealer=False,
                                protocol="replicated")
    mark = tmp_path / "computing"
    parties = [cli("party", "--config", str(config), "--id", str(i), LOOP,
                   env={"MPC_MARK": str(mark)}) for i in range(3)]
    try:
        deadline = time.monotonic() + START_UP
        while not Path(f"{mark}.{victim}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # in the middle of the loop
        os.kill(parties[victim].pid, signal.SIGSTOP)
        if freeze_for is not None:
            time.sleep(freeze_for)
            os.kill(parties[victim].pid, signal.SIGCONT)
        # within 60 s: well before the 120 s peer timeout, so the heartbeat it must be
        return {i: p.communicate(timeout=60) + (p.returncode,)
                for i, p in enumerate(parties) if i != victim}
    finally:
        for p in parties:
            if p.poll() is None:
                p.kill()
                p.communicate()


@pytest.mark.parametrize("victim", [0, 2])
def test_a_frozen_server_is_named_by_the_other_two_by_heartbeat(tmp_path, victim):
    """A stopped server (alive to the kernel: its sockets stay open) is declared lost by the
    heartbeat, not only after the peer timeout; each of the other two names it."""
    for who, (out, err, code) in _frozen_server(tmp_path, victim, None).items():
        assert code == 1 and "done" not in out, (who, err)
        assert f"peer {victim}" in err or f"party {victim}" in err, (who, err)


def test_a_server_frozen_shorter_than_the_heartbeat_is_only_slow(tmp_path):
    for who, (out, err, code) in _frozen_server(tmp_path, 1, 1.0).items():
        assert code == 0 and f"party {who} done" in out, err


def test_different_code_raises_protocol_error(tmp_path):
    outs = run_cluster(tmp_path, env={"MPC_DIFFERENT_CODE": "1"}, timeout=10.0)
    assert any("ProtocolError" in err for _, err, _ in outs), [e for _, e, _ in outs]
    assert all(code == 1 for _, _, code in outs)


def test_wrong_key_is_refused(tmp_path):
    config = make_local_cluster(tmp_path, 3, with_dealer=False, protocol="replicated")
    keys = tmp_path / "keys"
    os.replace(keys / "party1.key_secret", keys / "party0.key_secret")
    proc = cli("party", "--config", str(config), "--id", "0", SCRIPT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "config expects" in err, err


def _train(ctx):
    import nn
    from nn.plain import breast_cancer, logistic_regression_accuracy
    xtr, xte, ytr, yte = breast_cancer()
    x = mpc.share(ctx, xtr if ctx.pid == 0 else None, 0, shape=xtr.shape)
    y = mpc.share(ctx, ytr if ctx.pid == 1 else None, 1, shape=ytr.shape)
    x_test = mpc.share(ctx, xte if ctx.pid == 2 else None, 2, shape=xte.shape)
    y_test = mpc.share(ctx, yte if ctx.pid == 2 else None, 2, shape=yte.shape)
    model = nn.Linear(ctx, 30, 1, seed=0)
    nn.fit(model, nn.BCEWithLogitsLoss(), nn.SGD(model.parameters(), lr=0.1), x, y,
           epochs=3, batch_size=32, progress=False)
    plain = logistic_regression_accuracy(xtr, ytr, xte, yte, epochs=3, batch_size=32, lr=0.1)
    return nn.accuracy(model, x_test, y_test), plain


def test_end_to_end_training_with_three_processes_and_no_dealer():
    results = run_processes(_train, 3, protocol="replicated", timeout=60)
    accuracy, plain = results[0]
    assert all(r[0] == accuracy for r in results)
    assert abs(accuracy - plain) <= 0.01, (accuracy, plain)


def test_keys_command_writes_a_replicated_cluster(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mpc", "keys", "--protocol", "replicated",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    config = load_config(tmp_path / "cluster.toml")
    assert config.protocol == "replicated" and config.dealer is None and config.n_parties == 3
    assert not (tmp_path / "keys" / "dealer.key_secret").exists()
    bad = subprocess.run([sys.executable, "-m", "mpc", "keys", "--protocol", "replicated",
                          "--parties", "4", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "exactly 3 parties, not 4" in bad.stderr  # a usage error


def test_refused_before_anything_runs(tmp_path):
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "mpc", "run", "-n", "2", "--protocol",
                          "replicated", SCRIPT], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "exactly 3 parties, not 2" in run.stderr  # a usage error
    assert "result" not in run.stdout
    trunc = subprocess.run([sys.executable, "-m", "mpc", "run", "-n", "3", "--protocol",
                            "replicated", "--truncation", "local-probabilistic", SCRIPT],
                           capture_output=True, text=True, timeout=60)
    assert trunc.returncode == 2 and "only the exact truncation" in trunc.stderr
    assert time.monotonic() - start < 20  # no process was started, no timeout waited for
    with pytest.raises(ValueError, match="exactly 3 parties"):
        run_processes(product, 4, protocol="replicated")
    with pytest.raises(ValueError, match="exactly 3 parties"):
        mpc.run_local(lambda ctx: None, 2, protocol="replicated")


def test_cluster_files_the_protocol_cannot_use_are_refused(tmp_path):
    path = make_local_cluster(tmp_path, 3, with_dealer=False, protocol="replicated")
    config = load_config(path)
    with pytest.raises(ValueError, match="refuses plaintext links"):
        open_mesh(config, 0, curve=False)
    text = path.read_text()
    with_dealer = make_local_cluster(tmp_path / "d", 3).read_text()
    dealer_entry = with_dealer[with_dealer.index("[dealer]"):].split("\n\n")[0]
    path.write_text(text + "\n" + dealer_entry + "\n")
    with pytest.raises(ValueError, match="a \\[dealer\\] entry, but the replicated protocol"):
        load_config(path)
    path.write_text(text.replace('protocol = "replicated"', 'protocol = "rep3"'))
    with pytest.raises(ValueError, match="unknown protocol 'rep3'"):
        load_config(path)
    four = make_local_cluster(tmp_path / "f", 4, with_dealer=False)
    four.write_text(four.read_text().replace('protocol = "dealer"', 'protocol = "replicated"'))
    with pytest.raises(ValueError, match="exactly 3 parties, not 4"):
        load_config(four)

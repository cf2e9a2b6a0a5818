"""Parties as real OS processes over ZeroMQ with CURVE: the launcher, the one-party-per-
terminal commands, a killed party, parties running different code, wrong keys."""

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
from mpc.launcher import make_local_cluster, run_processes

SCRIPT = str(Path(__file__).parent / "scripts" / "mul_script.py")
EXPECTED = [0.0, -0.5, -1.0, -1.5, -2.0, -2.5]


def product_and_stats(ctx):
    rng = np.random.default_rng(ctx.pid)
    x = mpc.share(ctx, rng.normal(size=(30, 40)) if ctx.pid == 0 else None, 0, shape=(30, 40))
    y = mpc.share(ctx, rng.normal(size=(40, 20)) if ctx.pid == 1 else None, 1, shape=(40, 20))
    before = ctx.stats.snapshot(without=("dealer",))
    z = x @ y
    used = ctx.stats.snapshot(without=("dealer",))
    return z.reveal(), used.bytes_sent - before.bytes_sent, used.rounds - before.rounds


@pytest.mark.parametrize("n", [2, 3])
def test_run_processes_matmul_matches_numpy(n):
    results = run_processes(product_and_stats, n, timeout=30)
    x = np.random.default_rng(0).normal(size=(30, 40))
    y = np.random.default_rng(1).normal(size=(40, 20))
    for z, sent, rounds in results:
        assert np.max(np.abs(z - x @ y)) < 40 * 4 * 2**-16
    # party 0 sends d, e and the truncation opening to each peer: elements * 8 bytes + headers
    z, sent, rounds = results[0]
    elements = (30 * 40 + 40 * 20 + 30 * 20) * (n - 1)
    assert elements * 8 <= sent <= elements * 8 + 200 * (n - 1)
    assert rounds == 2


def test_run_processes_with_the_insecure_test_provider_needs_no_dealer():
    results = run_processes(product_and_stats, 2, provider="insecure-seeded", timeout=30)
    x = np.random.default_rng(0).normal(size=(30, 40))
    y = np.random.default_rng(1).normal(size=(40, 20))
    assert np.max(np.abs(results[0][0] - x @ y)) < 40 * 4 * 2**-16


def cli(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "mpc", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
                            **kw)


def run_cluster(tmp_path, n, env=None, timeout=5.0):
    config = make_local_cluster(tmp_path, n, timeout=timeout)
    dealer = cli("dealer", "--config", str(config), env=env)
    parties = [cli("party", "--config", str(config), "--id", str(i), SCRIPT, env=env)
               for i in range(n)]
    outs = []
    for proc in parties + [dealer]:
        out, err = proc.communicate(timeout=60)
        outs.append((proc.returncode, out, err))
    return outs[:n], outs[n]


def test_one_party_per_terminal(tmp_path):
    parties, dealer = run_cluster(tmp_path, 3)
    for pid, (code, out, err) in enumerate(parties):
        assert code == 0, err
        assert f"party {pid} result {EXPECTED}" in out
        assert f"party {pid}: sent" in err  # the communication summary
    assert dealer[0] == 0, dealer[2]


def test_killed_party_is_named_by_the_others(tmp_path):
    start = time.monotonic()
    parties, dealer = run_cluster(tmp_path, 3, env={"MPC_DIE_AT": "2"}, timeout=5.0)
    assert time.monotonic() - start < 30
    assert parties[2][0] == -9
    for code, out, err in parties[:2]:
        assert code == 1
        assert "peer 2" in err or "party 2" in err, err
    assert dealer[0] == 1


def test_different_code_raises_protocol_error(tmp_path):
    parties, _ = run_cluster(tmp_path, 2, env={"MPC_DIFFERENT_CODE": "1"})
    for code, out, err in parties:
        assert code == 1
        assert "ProtocolError" in err, err


def test_mpc_run_exit_codes(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "mpc", "run", "-n", "2", SCRIPT],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert f"party 0 result {EXPECTED}" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "mpc", "run", "-n", "3", "--timeout", "5", SCRIPT],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MPC_DIE_AT": "1"})
    assert bad.returncode == 1
    assert "party 1" in bad.stderr


def test_key_file_not_matching_config_is_refused(tmp_path):
    config_path = make_local_cluster(tmp_path, 2)
    keys = tmp_path / "keys"
    os.replace(keys / "party0.key_secret", keys / "spare")
    os.replace(keys / "party1.key_secret", keys / "party0.key_secret")
    proc = cli("party", "--config", str(config_path), "--id", "0", SCRIPT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "party0.key_secret" in err and "config expects" in err


def test_keys_command_writes_a_loadable_cluster(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mpc", "keys", "--parties", "4", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    config = load_config(tmp_path / "cluster.toml")
    assert config.n_parties == 4 and config.dealer is not None
    assert (tmp_path / "keys" / "party3.key_secret").stat().st_mode & 0o077 == 0


def test_config_with_duplicate_address_refused(tmp_path):
    path = make_local_cluster(tmp_path, 2)
    text = path.read_text()
    first = load_config(path).parties[0].address
    second = load_config(path).parties[1].address
    path.write_text(text.replace(second, first))
    with pytest.raises(ValueError, match="used by more than one member"):
        load_config(path)
    port = first.rsplit(":", 1)[1]
    path.write_text(text.replace(second, f"tcp://localhost:{port}"))  # same port, other name
    with pytest.raises(ValueError, match=f"tcp://localhost:{port} is used by more than one"):
        load_config(path)
    path.write_text(text.replace(second, "tcp://127.0.0.1"))
    with pytest.raises(ValueError, match="not of the form tcp://host:port"):
        load_config(path)


def train_killed_at(ctx, directory, kill_party, kill_epoch):
    """Logistic regression with checkpoints; in a fresh run `kill_party` SIGKILLs itself
    while evaluating epoch `kill_epoch` (after epoch kill_epoch - 1 was saved)."""
    import signal

    import nn
    from nn.plain import breast_cancer
    xtr, _, ytr, _ = breast_cancer()
    x = mpc.share(ctx, xtr[:96] if ctx.pid == 0 else None, 0, shape=(96, 30))
    y = mpc.share(ctx, ytr[:96] if ctx.pid == 1 else None, 1, shape=(96, 1))
    model = nn.Linear(ctx, 30, 1, seed=0)

    epochs_seen = []

    def evaluate(m):  # called once per epoch, before that epoch's checkpoint is written
        epochs_seen.append(1)
        if ctx.pid == kill_party and len(epochs_seen) == kill_epoch:
            os.kill(os.getpid(), signal.SIGKILL)
        return {}
    nn.fit(model, nn.BCEWithLogitsLoss(), nn.SGD(model.parameters(), lr=0.1, momentum=0.5),
           x, y, epochs=3, batch_size=32, progress=False, checkpoint_dir=directory,
           evaluate=evaluate)
    return model.weight.value.reveal()


def test_training_killed_mid_run_resumes_and_matches(tmp_path):
    straight = run_processes(train_killed_at, 2, args=(str(tmp_path / "a"), -1, -1),
                             timeout=20)[0]
    with pytest.raises(mpc.PartyFailed, match="party 1"):
        run_processes(train_killed_at, 2, args=(str(tmp_path / "b"), 1, 3), timeout=5)
    saved = set(os.listdir(tmp_path / "b"))
    # party 1 died before writing epoch 3; party 0 may or may not have written it (it
    # needs nothing from party 1 to do so): both hold epoch 2, so that is where they resume
    assert {"party1-epoch1.npz", "party1-epoch2.npz"} == {f for f in saved if "party1" in f}
    assert "party0-epoch2.npz" in saved
    resumed = run_processes(train_killed_at, 2, args=(str(tmp_path / "b"), -1, -1),
                            timeout=20)[0]
    np.testing.assert_allclose(resumed, straight, atol=30 * 2**-16)


LOOP = str(Path(__file__).parent / "scripts" / "loop_script.py")


def _frozen_cluster(tmp_path, freeze_for: float | None):
    """Three parties and the dealer (timeout 30 s, heartbeat 2 s); party 1 is stopped
    (SIGSTOP) mid-run, and resumed after `freeze_for` s (None: never)."""
    config = make_local_cluster(tmp_path, 3, timeout=30.0, heartbeat=2.0)
    mark = tmp_path / "computing"
    dealer = cli("dealer", "--config", str(config))
    parties = [cli("party", "--config", str(config), "--id", str(i), LOOP,
                   env={"MPC_MARK": str(mark)}) for i in range(3)]
    try:
        deadline = time.monotonic() + 60
        while not Path(f"{mark}.1").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # in the middle of the loop
        os.kill(parties[1].pid, signal.SIGSTOP)
        start = time.monotonic()
        if freeze_for is not None:
            time.sleep(freeze_for)
            os.kill(parties[1].pid, signal.SIGCONT)
        others = [p.communicate(timeout=60) + (p.returncode,) for p in (parties[0], dealer)]
        return others, time.monotonic() - start, parties
    finally:
        for p in parties + [dealer]:
            if p.poll() is None:
                p.kill()
                p.communicate()


def test_a_party_frozen_shorter_than_the_heartbeat_is_only_slow(tmp_path):
    (party0, dealer), _, parties = _frozen_cluster(tmp_path, freeze_for=1.0)
    assert party0[2] == 0 and "party 0 done" in party0[0], party0[1]
    assert dealer[2] == 0, dealer[1]


def test_a_frozen_party_is_declared_lost_by_heartbeat_before_the_timeout(tmp_path):
    (party0, dealer), seconds, _ = _frozen_cluster(tmp_path, freeze_for=None)
    assert party0[2] == 1 and "PeerLost" in party0[1] and "peer 1" in party0[1], party0[1]
    assert dealer[2] == 1
    assert seconds < 15, seconds  # heartbeat 2 s (+ grace), not the 30 s timeout


KILL = str(Path(__file__).parent / "scripts" / "kill_script.py")


@pytest.mark.parametrize("victim,point", [(1, "mul"), (2, "compare"), (0, "train"),
                                          (2, "before-connect")])
def test_a_party_killed_anywhere_is_named_by_every_other_member(tmp_path, victim, point):
    """Kill sweep over real processes: every other party and the dealer exit with an
    error naming the lost party within the timeout (5 s; connecting: the same)."""
    config = make_local_cluster(tmp_path, 3, timeout=5.0)
    env = {"MPC_KILL_AT": f"{victim}:{point}"}
    start = time.monotonic()
    dealer = cli("dealer", "--config", str(config), env=env)
    parties = [cli("party", "--config", str(config), "--id", str(i), KILL, env=env)
               for i in range(3)]
    if point == "before-connect":
        parties[victim].kill()
    outs = [p.communicate(timeout=60) + (p.returncode,) for p in parties + [dealer]]
    assert time.monotonic() - start < 30
    assert outs[victim][2] == -9
    for who, (out, err, code) in enumerate(outs):
        if who != victim:
            assert code == 1 and "done" not in out, (who, err)
            assert f"peer {victim}" in err or f"party {victim}" in err or \
                f"peers [{victim}]" in err, (who, err)


def _orphans(marker: str) -> list[int]:
    """Pids of live processes whose environment carries `marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_mpc_run_with_a_killed_party_exits_nonzero_and_leaves_no_process():
    marker = f"MPC_TEST_MARK={os.getpid()}-{time.monotonic_ns()}"
    out = subprocess.run([sys.executable, "-m", "mpc", "run", "-n", "3", "--timeout", "5", KILL],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MPC_KILL_AT": "1:compare",
                              marker.split("=")[0]: marker.split("=")[1]})
    assert out.returncode == 1 and "party 1" in out.stderr, out.stderr
    time.sleep(0.5)
    assert _orphans(marker) == []


def test_a_refused_input_is_not_quoted_to_the_other_parties(tmp_path):
    script = str(Path(__file__).parent / "scripts" / "refuse_script.py")
    config = make_local_cluster(tmp_path, 2, timeout=10.0)
    procs = [cli("dealer", "--config", str(config))] + [
        cli("party", "--config", str(config), "--id", str(i), script) for i in range(2)]
    (_, dealer_err), (_, err0), (_, err1) = [p.communicate(timeout=60) for p in procs]
    assert "5123456789" in err0  # party 0's own message has it
    assert "PeerLost" in err1 and "ValueError (details kept by that party)" in err1, err1
    assert "5123456789" not in err1 + dealer_err

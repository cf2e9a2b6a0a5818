"""The `mpc` command as a user meets it: help, arguments refused before anything starts,
output lines prefixed per party, what main returned, a launcher killed or interrupted
(no process left), a frozen party named first, members saying whom they wait for."""

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from multiprocessing import Pipe
from pathlib import Path

import pytest

import mpc.launcher
from mpc import cli
from mpc.launcher import blamed_member, make_local_cluster, run_processes, watch_lifeline
from mpc.relay import OutputRelay
from net import PeerLost, PeerTimeout

SCRIPTS = Path(__file__).parent / "scripts"
MUL, LOOP, LINES = (str(SCRIPTS / f"{name}_script.py") for name in ("mul", "loop", "lines"))


def mpc_cmd(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "mpc", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, **kw)


def processes_marked(marker: str) -> list[int]:
    """Pids of live (not zombie) processes whose environment carries `marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "environ").read_bytes() \
                    and (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(proc.name))
        except (OSError, IndexError):
            continue
    return found


# -- help and arguments -------------------------------------------------------------------

def test_help_lists_every_command_and_every_option_says_what_and_its_default():
    parser = cli.build_parser()
    text = parser.format_help()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    first_line = text.split("\n\n")[1]
    for name, sub in commands.choices.items():
        assert name in first_line, (name, first_line)
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (name, action.dest)
            shown = sub._get_formatter()._get_help_string(action)
            if action.default not in (None, False) and not action.required:
                assert "default" in shown, (name, action.dest, shown)


@pytest.fixture
def no_process_may_start(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a process was started")
    monkeypatch.setattr(mpc.launcher, "run_processes", refuse)
    monkeypatch.setattr(mpc.launcher, "run_cluster_party", refuse)


@pytest.mark.parametrize("argv,message", [
    (["-n", "1", MUL], "-n 1: the dealer protocol needs at least 2 parties"),
    (["-n", "0", MUL], "-n 0: the dealer protocol needs at least 2 parties"),
    (["-n", "2", "missing.py"], "missing.py: no such file"),
    (["-n", "2", "NOMAIN"], "defines no main(ctx) function"),
    (["-n", "2", "SYNTAX"], "syntax.py, line 1: "),
    (["-n", "3", "--truncation", "local-probabilistic", MUL],
     "local-probabilistic truncation works for 2 parties only"),
    (["--timeout", "0", MUL], "--timeout 0: must be positive"),
])
def test_arguments_that_cannot_work_are_refused_before_any_process_starts(
        tmp_path, capsys, no_process_may_start, argv, message):
    (tmp_path / "nomain.py").write_text("import numpy\n\ndef helper(ctx):\n    return 1\n")
    (tmp_path / "syntax.py").write_text("def main(ctx) return 1\n")
    names = {"NOMAIN": str(tmp_path / "nomain.py"), "SYNTAX": str(tmp_path / "syntax.py")}
    assert cli.main(["run"] + [names.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mpc run: error: ") and message in err, err


def test_a_script_whose_main_is_bound_in_a_block_or_imported_is_accepted(tmp_path):
    guarded = tmp_path / "guarded.py"
    guarded.write_text("try:\n    from helpers import main\nexcept ImportError:\n"
                       "    def main(ctx):\n        return 0\n")
    assert mpc.launcher.ScriptTarget(guarded).problem() is None


def test_mpc_party_with_an_id_outside_the_cluster_is_refused(tmp_path, capsys,
                                                             no_process_may_start):
    config = make_local_cluster(tmp_path, 2)
    assert cli.main(["party", "--config", str(config), "--id", "2", MUL]) == 2
    assert "--id 2:" in capsys.readouterr().err


def test_refused_arguments_exit_2_from_the_command_line():
    out = subprocess.run([sys.executable, "-m", "mpc", "run", "-n", "1", MUL],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "needs at least 2 parties" in out.stderr
    assert "Traceback" not in out.stderr


# -- output ---------------------------------------------------------------------------------

def test_output_lines_are_prefixed_by_party_and_whole_and_main_results_are_printed():
    out = subprocess.run([sys.executable, "-m", "mpc", "run", "-n", "3", LINES],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    printed = [line for line in lines if line.startswith("[")]
    assert len(printed) == 150
    for line in printed:
        pid = line[len("[party "):line.index("]")]
        number = line.split()[3]
        assert line == f"[party {pid}] line {number} " + pid * 6000, line[:80]
    assert [f"party {pid}: main returned {pid}" for pid in range(3)] == lines[-3:]


def test_the_relay_keeps_lines_whole_and_a_progress_bar_in_place(capsys):
    relay = OutputRelay(frozenset({"stderr"}))
    (bar_r, bar_w), (line_r, line_w) = os.pipe(), os.pipe()
    relay.add("party 0", bar_r, "stderr")
    relay.add("party 1", line_r, "stderr")
    os.write(bar_w, b"\r 10%|#")
    time.sleep(0.3)
    os.write(line_w, b"hello ")   # half a line: held back until its newline
    time.sleep(0.3)
    os.write(bar_w, b"\r 20%|##")
    time.sleep(0.3)
    os.write(line_w, b"world\n")
    time.sleep(0.3)  # two pipes, two relay threads: the test orders their writes itself
    os.write(bar_w, b"\r        \rno newline at the end")
    os.close(bar_w)
    os.close(line_w)
    relay.close()
    err = capsys.readouterr().err
    assert "[party 0]  10%|#" in err and "[party 0]  20%|##" in err
    assert "\r\x1b[2K[party 1] hello world\n" in err  # the bar erased first, the line whole
    assert err.endswith("[party 0] no newline at the end\n")


def test_a_result_all_parties_agree_on_is_printed_once():
    out = subprocess.run([sys.executable, "-m", "mpc", "run", "-n", "2", MUL],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert "[party 1] party 1 result [0.0, -0.5" in out.stdout
    assert out.stdout.count("main returned") == 1
    assert "main returned (every party): array([ 0. , -0.5, -1. , -1.5, -2. , -2.5])" \
        in out.stdout


# -- a launcher killed or interrupted --------------------------------------------------------

def _launch_long_run(tmp_path, marker: str):
    """`mpc run -n 3` of a 60-s loop; returns the launcher once every party computes."""
    name, value = marker.split("=")
    mark = tmp_path / "computing"
    launcher = mpc_cmd("run", "-n", "3", LOOP,
                       env={name: value, "MPC_MARK": str(mark), "MPC_SECONDS": "60"})
    deadline = time.monotonic() + 90
    while not all(Path(f"{mark}.{p}").exists() for p in range(3)):
        assert launcher.poll() is None, launcher.communicate()
        assert time.monotonic() < deadline, "the parties did not start"
        time.sleep(0.1)
    return launcher


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT])
def test_a_signal_to_the_launcher_alone_leaves_no_process(tmp_path, sig):
    marker = f"MPC_TEST_MARK={os.getpid()}-{time.monotonic_ns()}"
    launcher = _launch_long_run(tmp_path, marker)
    try:
        assert len(processes_marked(marker)) >= 5  # launcher, 3 parties, dealer
        launcher.send_signal(sig)
        _, err = launcher.communicate(timeout=30)
        if sig == signal.SIGKILL:
            assert launcher.returncode == -9
        else:
            assert launcher.returncode == 128 + sig, err
            assert f"interrupted ({signal.Signals(sig).name}); every party and the dealer " \
                   "stopped" in err, err
        deadline = time.monotonic() + 10
        while processes_marked(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_marked(marker) == []
    finally:
        for pid in processes_marked(marker):
            os.kill(pid, signal.SIGKILL)


def test_a_child_ends_when_its_lifeline_closes():
    lifeline, launcher_end = Pipe(duplex=False)
    ended = threading.Event()
    watcher = threading.Thread(target=watch_lifeline, args=(lifeline, ended.set))
    watcher.start()
    assert not ended.wait(0.3)  # the launcher is alive: nothing happens
    launcher_end.close()         # what the launcher's death does to its end
    watcher.join(5)
    assert ended.is_set()


# -- diagnoses ------------------------------------------------------------------------------

def test_blamed_member_is_the_other_member_a_network_error_blames():
    assert blamed_member(ValueError("x"), 0) is None
    assert blamed_member(PeerLost(1, "party 0: peer 1 disconnected"), 0) == 1
    assert blamed_member(PeerLost(2, "party 0: peer 2 closed the mesh before sending message "
                                     "3 (it said: PeerLost: ...)", culprit=1), 0) == 1
    assert blamed_member(PeerTimeout(1, "party 0: ...", culprit=0), 0) is None  # its own


def test_a_frozen_party_is_named_in_the_first_line(tmp_path):
    mark = tmp_path / "computing"
    run = mpc_cmd("run", "-n", "3", "--timeout", "5", LOOP,
                  env={"MPC_MARK": str(mark), "MPC_SECONDS": "60"})
    try:
        deadline = time.monotonic() + 90
        while not Path(f"{mark}.1").exists() or not Path(f"{mark}.1").read_text():
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.1)
        os.kill(int(Path(f"{mark}.1").read_text()), signal.SIGSTOP)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1
    headline = next(line for line in err.splitlines() if line.startswith("mpc"))
    assert headline == "mpc: party 1 failed:", err
    assert "stopped: SIGSTOP or a debugger" in err, err


def test_a_hung_wait_ends_after_timeout_and_a_long_run_is_not_cut_at_ten_timeouts():
    """--timeout bounds each wait for a peer; a run may take longer than 10 timeouts."""
    started = time.monotonic()
    assert run_processes(_steps, 2, args=(42, 0.5), timeout=2.0) == [42.0, 42.0]
    assert time.monotonic() - started > 21.0  # 42 steps 0.5 s apart: beyond 10 x 2 s
    with pytest.raises(mpc.PartyFailed, match="PeerTimeout") as failed:
        run_processes(_party_1_sleeps, 2, args=(30.0,), timeout=2.0)
    assert failed.value.party == "party 1"
    assert "it reported no error (still running, but silent to its peers)" in str(failed.value)


def _steps(ctx, steps, pause):
    """`steps` openings `pause` s apart (each wait for a peer short); returns their sum."""
    import numpy as np
    x = mpc.share(ctx, np.ones(1) if ctx.pid == 0 else None, 0, shape=(1,))
    total = 0.0
    for _ in range(steps):
        time.sleep(pause)
        total += float(x.reveal()[0])
    return total


def _party_1_sleeps(ctx, seconds):
    """Party 1 is stuck in local code (answering heartbeats): party 0 times out."""
    if ctx.pid == 1:
        time.sleep(seconds)
    return _steps(ctx, 1, 0.0)


def test_a_time_limit_bounds_the_whole_run():
    out = subprocess.run([sys.executable, "-m", "mpc", "run", "-n", "2", "--time-limit", "4",
                          LOOP], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MPC_SECONDS": "60"})
    assert out.returncode == 1
    assert "within 4 s" in out.stderr, out.stderr


def test_a_party_waiting_for_its_peers_says_so(tmp_path):
    config = make_local_cluster(tmp_path, 2, timeout=3.0)
    party = mpc_cmd("party", "--config", str(config), "--id", "0", MUL)
    _, err = party.communicate(timeout=60)
    assert party.returncode == 1
    first = err.splitlines()[0]
    assert first.startswith("party 0: waiting for party 1 at tcp://127.0.0.1:") and \
        " and the dealer at tcp://127.0.0.1:" in first and \
        first.endswith(" to connect (up to 3 s)"), first
    assert "did not connect within 3 s" in err


def test_run_processes_without_a_main_guard_says_what_to_do(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text("from mpc.launcher import run_processes\n\n"
                      "def f(ctx):\n    return ctx.pid\n\n"
                      "print(run_processes(f, 2, timeout=10))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode != 0
    assert "run_processes was called while a party process was importing the main " \
           "module: call it under `if __name__ == \"__main__\":`" in out.stderr, out.stderr

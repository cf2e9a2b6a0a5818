"""`mpc bench --crypten / --spu`: the interleaving, the quiet decision, the lines' fields and
the refusals, with fake runners and fake loads (no timing asserted); one real run beside
CrypTen when its venv exists."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import anchors, fair
from bench.anchors import Anchor, anchor, anchors_dir
from mpc.cli import build_parser, check_bench, main

CPU = "Test CPU x 2"


def _loads(*values):
    it = iter(values)
    return lambda: next(it)


def _ours(workload="W1", median=0.1, correct=True, bytes_sent=1000):
    return lambda: {"system": "mpc-dl", "workload": workload, "parties": 2,
                    "protocol": "dealer", "median_s": median, "bytes_sent_party0": bytes_sent,
                    "rounds": 2, "correct": correct}


def _theirs(median=0.2, correct=True, tcp=2000, error=None):
    line = {"system": "crypten-0.4.1", "median_s": median, "tcp_bytes_sent_party0": tcp,
            "rounds": 4, "correct": correct}
    if error:
        line = {"system": "crypten", "error": error}
    return lambda: dict(line)


class FakeAnchor:
    label, bytes_field = "crypten TTP", "tcp_bytes_sent_party0"

    def __init__(self, theirs, missing=()):
        self.theirs, self.missing, self.calls = theirs, missing, []

    def unsupported(self, workload, parties):
        return f"no {workload}" if workload in self.missing else None

    def run(self, workload, parties, reps):
        self.calls.append((workload, parties, reps))
        return self.theirs()


def test_interleave_alternates_the_systems_and_records_the_load_before_each_run():
    order = []
    runners = [(name, lambda name=name: order.append(name) or {"system": name})
               for name in ("ours", "theirs")]
    lines = list(fair.interleave(runners, 3, CPU, load=_loads(0.1, 0.2, 0.3, 0.4, 0.5, 0.6)))
    assert order == ["ours", "theirs"] * 3
    assert [system for system, _ in lines] == order
    assert [line["load"] for _, line in lines] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert [line["run"] for _, line in lines] == [1, 1, 2, 2, 3, 3]
    assert all(line["cpu"] == CPU for _, line in lines)


def test_waits_for_the_load_to_fall_but_not_past_the_cooldown():
    sleeps = []
    assert fair.wait_for_quiet(_loads(0.9, 0.7, 0.4), sleeps.append, 60) == 0.4
    assert sleeps == [5.0, 5.0]
    sleeps.clear()
    assert fair.wait_for_quiet(_loads(0.55, 0.55), sleeps.append, 10) == 0.55
    assert sleeps == [5.0]  # then 5 s more could not bring 0.55 below 0.5
    sleeps.clear()
    assert fair.wait_for_quiet(_loads(3.0), sleeps.append, 60) == 3.0  # hopeless: no wait
    assert fair.wait_for_quiet(_loads(0.9), sleeps.append, 0) == 0.9
    assert sleeps == []


def test_no_more_waiting_once_a_workload_was_loud():
    sleeps = []
    runners = [("ours", dict), ("theirs", dict)]
    lines = list(fair.interleave(runners, 2, CPU, load=lambda: 0.55, sleep=sleeps.append,
                                 cooldown=20))
    assert len(lines) == 4
    assert sleeps == [5.0] * 3  # only before the first run


def test_ratio_only_when_every_load_was_quiet():
    loads = iter([0.1, 0.2, 0.3, 0.4])
    lines = list(fair.compare("W1", 2, [FakeAnchor(_theirs(0.2))], _ours(median=0.1), 3, 2, 0,
                              load=lambda: next(loads)))
    assert [line["system"] for line in lines] == \
        ["mpc-dl", "crypten-0.4.1", "mpc-dl", "crypten-0.4.1", "ratio mpc-dl/crypten TTP"]
    last = lines[-1]
    assert last["quiet"] is True and last["ratio"] == 0.5 and last["bytes_ratio"] == 0.5
    assert last["load"] == [0.1, 0.2, 0.3, 0.4] and "why" not in last
    assert last["ours_median_s"] == 0.1 and last["theirs_median_s"] == 0.2

    loads = iter([0.1, 0.2, 0.7, 0.4])
    last = list(fair.compare("W1", 2, [FakeAnchor(_theirs())], _ours(), 3, 2, 0,
                             load=lambda: next(loads)))[-1]
    assert last["ratio"] is None and last["quiet"] is False
    assert last["load"] == [0.1, 0.2, 0.7, 0.4] and "not quiet" in last["why"]
    assert last["bytes_ratio"] == 0.5  # bytes do not depend on the load
    assert "ours_median_s" not in last


def test_the_fields_of_every_line():
    fake = FakeAnchor(_theirs())
    lines = list(fair.compare("W2b", 2, [fake], _ours("W2b"), 3, 2, 0, load=lambda: 0.1))
    assert fake.calls == [("W2b", 2, 3)] * 2
    for line in lines[:-1]:
        assert {"median_s", "run", "load", "cpu", "correct"} <= set(line)
        json.dumps(line)
    assert set(lines[-1]) == {"system", "workload", "parties", "ours", "theirs", "quiet",
                              "load", "cpu", "ratio", "bytes_ratio", "rounds",
                              "ours_median_s", "theirs_median_s"}
    assert lines[-1]["ours"] == "mpc-dl dealer" and lines[-1]["rounds"] == [2, 4]


def test_no_ratio_of_a_failed_or_wrong_run():
    failed = list(fair.compare("W1", 2, [FakeAnchor(_theirs(error="boom"))], _ours(), 3, 2, 0,
                               load=lambda: 0.1))[-1]
    assert failed["ratio"] is None and "crypten TTP failed: boom" in failed["why"]
    wrong = list(fair.compare("W1", 2, [FakeAnchor(_theirs())], _ours(correct=False), 3, 2, 0,
                              load=lambda: 0.1))[-1]
    assert wrong["ratio"] is None and "not correct: mpc-dl run 1" in wrong["why"]


def test_a_workload_they_lack_runs_nothing_and_says_why():
    fake = FakeAnchor(_theirs(), missing=("W5",))
    ran = []
    lines = list(fair.compare("W5", 2, [fake], lambda: ran.append(1), 3, 2, 0,
                              load=lambda: 0.1))
    assert ran == [] and fake.calls == []
    assert len(lines) == 1 and lines[0]["ratio"] is None and lines[0]["why"] == "no W5"


def test_cpu_model_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC 7B13\n")
    assert fair.cpu_model(info) == "AMD EPYC 7B13 x 2"
    assert fair.cpu_model(tmp_path / "absent")


def test_which_of_theirs_beside_which_of_ours(tmp_path):
    assert anchor("crypten", "dealer", tmp_path).label == "crypten TTP"
    assert anchor("spu", "dealer", tmp_path).label == "spu SEMI2K"
    assert anchor("spu", "replicated", tmp_path).label == "spu ABY3"
    with pytest.raises(ValueError, match="--spu"):
        anchor("crypten", "replicated", tmp_path)
    spu = anchor("spu", "replicated", tmp_path)
    assert spu.command("W1", 3, 5)[1:] == ["bench.py", "--parties", "3", "--workload", "W1",
                                           "--reps", "5", "--protocol", "ABY3"]
    assert "W5" in spu.unsupported("W5", 3)
    assert anchor("crypten", "dealer", tmp_path).unsupported("W6", 3)


def test_the_anchors_folder(tmp_path):
    assert anchors_dir(str(tmp_path)) == tmp_path.resolve()
    with pytest.raises(ValueError, match="--anchors"):
        anchors_dir(str(tmp_path / "absent"))


def _fake_anchors(tmp_path):
    for system in ("crypten", "spu"):
        (tmp_path / system).mkdir()
        (tmp_path / system / "bench.py").write_text("")
    return str(tmp_path)


def test_a_missing_venv_exits_2_with_the_setup_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(anchors, "VENVS", {"crypten": tmp_path / "none",
                                           "spu": tmp_path / "none"})
    folder = _fake_anchors(tmp_path)
    for system in ("--crypten", "--spu"):
        assert main(["bench", system, "--anchors", folder, "--workload", "W1"]) == 2
        err = capsys.readouterr().err
        assert f"bash {Path(folder).resolve() / system[2:] / 'setup.sh'}" in err
        assert "never installed mid-benchmark" in err


@pytest.mark.parametrize("argv, message", [
    (["--crypten", "--protocol", "replicated", "--parties", "3"], "use --spu"),
    (["--crypten", "--runs", "1"], "--runs 1"),
    (["--crypten", "--anchors", "/nonexistent/anchors"], "no anchors folder"),
    (["--spu", "--scale"], "--scale measures ours alone"),
    (["--reps", "-1"], "--reps -1"),
    (["--reps", "0", "--scale"], "--reps 0"),
])
def test_settings_that_cannot_work_exit_2(argv, message, capsys):
    assert main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err


def test_runs_and_cooldown_only_matter_beside_another_system():
    args = build_parser().parse_args(["bench", "--runs", "1", "--cooldown", "-1"])
    assert check_bench(args) is None


def test_an_anchor_that_fails_gives_a_line_with_the_error(tmp_path, monkeypatch):
    folder = tmp_path / "crypten"
    folder.mkdir()
    (folder / "bench.py").write_text("import sys; sys.exit('no torch here')")
    monkeypatch.setattr(anchors, "VENVS", {"crypten": Path(sys.prefix)})
    line = Anchor("crypten", "TTP", folder, "tcp_bytes_sent_party0", ("W1",)).run("W1", 2, 1)
    assert "no torch here" in line["error"]


@pytest.mark.skipif(not Path("/tmp/crypten-venv/bin/python").exists(),
                    reason="CrypTen's venv is not set up (bash ../shared/anchors/crypten/setup.sh)")
def test_beside_crypten_end_to_end():
    out = subprocess.run([sys.executable, "-m", "mpc", "bench", "--crypten", "--workload", "W2b",
                          "--reps", "1", "--cooldown", "0"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["system"] for line in lines] == \
        ["mpc-dl", "crypten-0.4.1", "mpc-dl", "crypten-0.4.1", "ratio mpc-dl/crypten TTP"]
    assert all(line["correct"] for line in lines[:4])
    assert all(isinstance(line["load"], float) and line["cpu"] for line in lines[:4])
    last = lines[-1]
    assert last["load"] == [line["load"] for line in lines[:4]]
    assert (last["ratio"] is None) == (not last["quiet"])
    assert 0.5 < last["bytes_ratio"] < 2

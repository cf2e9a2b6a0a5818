"""The other systems' benchmark scripts in ../shared/anchors (CrypTen, SecretFlow SPU), run
as they are, each with its own venv, one JSON line per run."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
ANCHOR_DIRS = (CHECKOUT.parent / "shared" / "anchors", Path("/work/shared/anchors"))
VENVS = {"crypten": Path("/tmp/crypten-venv"), "spu": Path("/tmp/spu-venv")}  # their setup.sh
RUN_TIMEOUT = 1800.0


def anchors_dir(explicit: str | None = None) -> Path:
    """--anchors DIR, else the first of ../shared/anchors beside the checkout and
    /work/shared/anchors that exists; ValueError naming what was tried."""
    tried = [Path(explicit)] if explicit else list(ANCHOR_DIRS)
    for path in tried:
        if path.is_dir():
            return path.resolve()
    raise ValueError(f"no anchors folder at {' or '.join(map(str, tried))}: pass "
                     f"--anchors DIR (the folder with crypten/ and spu/)")


@dataclass(frozen=True)
class Anchor:
    """One system in one setting: `setting` is CrypTen's provider (TTP) or SPU's protocol
    (SEMI2K, ABY3); `bytes_field` is its line's field of bytes party 0 actually sent."""

    system: str
    setting: str
    directory: Path
    bytes_field: str
    workloads: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.system} {self.setting}"

    @property
    def python(self) -> Path:
        return VENVS[self.system] / "bin" / "python"

    def problem(self) -> str | None:
        """Why this system cannot run now (its script or venv missing), with the fix."""
        if not (self.directory / "bench.py").exists():
            return f"{self.directory / 'bench.py'} not found: pass --anchors DIR"
        if not self.python.exists():
            return (f"{self.label}: {self.python} not found; set it up first (it is never "
                    f"installed mid-benchmark): bash {self.directory / 'setup.sh'}")
        return None

    def unsupported(self, workload: str, parties: int) -> str | None:
        """Why its script has no figure for this workload and party count, if it has none."""
        if workload not in self.workloads:
            return (f"{self.system}'s bench.py has no {workload} (it has "
                    f"{', '.join(self.workloads)})")
        if self.system == "crypten" and workload == "W6" and parties != 2:
            return "crypten's bench.py runs W6 with 2 parties only (WORKLOADS.md)"
        return None

    def command(self, workload: str, parties: int, reps: int) -> list[str]:
        common = ["--parties", str(parties), "--workload", workload, "--reps", str(reps)]
        option = "--provider" if self.system == "crypten" else "--protocol"
        return [str(self.python), "bench.py", *common, option, self.setting]

    def run(self, workload: str, parties: int, reps: int) -> dict:
        """Its JSON line for one run (the last line it prints), or a line with `error`."""
        failed = {"system": self.system, "setting": self.setting, "workload": workload,
                  "parties": parties}
        try:
            out = subprocess.run(self.command(workload, parties, reps), cwd=self.directory,
                                 capture_output=True, text=True, timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            return {**failed, "error": f"no result within {RUN_TIMEOUT:g} s"}
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if out.returncode != 0 or not lines:
            return {**failed, "error": f"exit {out.returncode}: {out.stderr[-1500:]}"}
        line = json.loads(lines[-1])
        if line.get("median_s") is None and "error" not in line:
            line["error"] = line.get("note", "no time in its line")
        return line


def anchor(system: str, protocol: str, directory: Path) -> Anchor:
    """The setting of `system` to set beside our `protocol`: the dealer protocol beside
    CrypTen's trusted third party and SPU's SEMI2K, replicated beside SPU's ABY3."""
    if system == "crypten":
        if protocol != "dealer":
            raise ValueError(f"--crypten sets CrypTen's trusted third party beside the dealer "
                             f"protocol; it has nothing like {protocol} (use --spu: ABY3)")
        return Anchor("crypten", "TTP", directory / "crypten", "tcp_bytes_sent_party0",
                      ("W1", "W2a", "W2b", "W3", "W4", "W5", "W6", "W7"))
    setting = {"dealer": "SEMI2K", "replicated": "ABY3"}[protocol]
    return Anchor("spu", setting, directory / "spu", "bytes_sent_party0",
                  ("W1", "W2a", "W2b", "W3", "W4", "W6", "W7"))

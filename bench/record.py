"""A bench's record: run with ``--record``, a bench writes what it printed
(every repeat) beside the commit and the machine it ran on to
``bench/results/<bench>.md``, the table that ``bench/README.md`` links.

    python bench/figures.py --record
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = Path(os.environ.get("JAXCLF_BENCH_RESULTS", BENCH / "results"))  # elsewhere: the tests' records
FLAG = "--record"


class _Tee(io.TextIOBase):
    """Writes to the console and keeps a copy."""

    def __init__(self, console: io.TextIOBase):
        self.console, self.copy = console, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.console.write(text)

    def flush(self) -> None:
        self.console.flush()


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True, cwd=BENCH)
    return result.stdout.strip() if result.returncode == 0 else ""


def _commit() -> str:
    commit = _git("rev-parse", "--short=12", "HEAD") or "unknown"
    return f"{commit} (with uncommitted changes)" if _git("status", "--porcelain", "--untracked-files=no") else commit


def _processor() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _machine() -> dict[str, str]:
    import jax

    return {
        "processor": _processor(),
        "cores": f"{len(os.sched_getaffinity(0))} usable of {os.cpu_count()}",
        "devices": ", ".join(sorted({device.device_kind for device in jax.devices()})),
        "software": f"Python {platform.python_version()}, JAX {jax.__version__}, {platform.platform()}",
    }


def _write(name: str, command: str, output: str) -> Path:
    rows = {"command": f"`{command}`", "commit": _commit(), **_machine()}
    table = "\n".join(f"| {key} | {value} |" for key, value in rows.items())
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(f"# `{name}`\n\n| | |\n|---|---|\n{table}\n\nWhat it printed, every repeat:\n\n```\n{output}```\n")
    return path


def run(main: Callable[[], None]) -> None:
    """Runs a bench's ``main``; with ``--record`` on the command line, also writes its record."""
    if FLAG not in sys.argv:
        main()
        return
    sys.argv.remove(FLAG)
    name = Path(sys.argv[0]).stem
    command = shlex.join(["python", f"bench/{name}.py", *sys.argv[1:]])
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        main()
    print(f"recorded in {_write(name, command, tee.copy.getvalue())}", file=sys.stderr)

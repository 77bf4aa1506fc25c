"""What a launch costs before its first step: no TensorFlow on the training
path, and JAX's persistent compilation cache (a second launch compiles nothing)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY, launch_in_process

ROOT = Path(__file__).resolve().parents[1]

# In a fresh interpreter: launch.py as the command line runs it, then report
# whether TensorFlow was ever imported and what the compilation cache did.
_PROBE = """
import atexit, json, runpy, sys
import jax
counts = {}
jax.monitoring.register_event_listener(lambda event, **_: counts.__setitem__(event, counts.get(event, 0) + 1))
atexit.register(lambda: print("PROBE " + json.dumps({"tensorflow": "tensorflow" in sys.modules, **counts})))
sys.argv = ["launch.py", *sys.argv[1:]]
runpy.run_path("launch.py", run_name="__main__")
"""


def _probe_launch(*overrides: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *overrides], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [line] = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    return json.loads(line.removeprefix("PROBE "))


@pytest.mark.slow  # two launches in fresh processes, ~25 s
def test_a_training_run_never_imports_tensorflow_and_a_second_launch_compiles_nothing(tmp_path, data_dir):
    cache = tmp_path / "cache"
    overrides = (
        f"data.data_dir={data_dir}",
        "trainer.max_steps=20",
        "callbacks.evaluation.every_steps=10",
        "callbacks.checkpoint.every_steps=10",
        "callbacks.tensorboard.every_steps=10",
        f"hardware.compilation_cache_dir={cache}",
    )
    first = _probe_launch(f"hydra.run.dir={tmp_path / 'first'}", *overrides)
    second = _probe_launch(f"hydra.run.dir={tmp_path / 'second'}", *overrides)
    assert not first["tensorflow"] and not second["tensorflow"]
    assert list((tmp_path / "first").glob("events.out.tfevents.*"))  # TensorBoard was written all the same
    misses = "/jax/compilation_cache/cache_misses"  # counted only for programs written to the cache
    hits = "/jax/compilation_cache/cache_hits"
    requests = "/jax/compilation_cache/compile_requests_use_cache"  # every compilation
    assert first.get(misses, 0) > 0 and first.get(hits, 0) == 0, first
    assert second.get(misses, 0) == 0 and second.get(hits, 0) == first[misses], second
    assert second[requests] == second[hits], second  # every program of the second launch came from the cache


def test_a_cache_directory_that_cannot_be_created_costs_one_warning_not_the_run(tmp_path, data_dir, caplog):
    caplog.set_level(logging.WARNING)
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    code, stderr = launch_in_process(
        f"hydra.run.dir={tmp_path / 'run'}",
        f"data.data_dir={data_dir}",
        *TINY,
        "trainer.max_steps=10",
        f"hardware.compilation_cache_dir={blocked}/cache",
    )
    assert code == 0, stderr
    [warning] = [record.getMessage() for record in caplog.records if "compilation_cache_dir" in record.getMessage()]
    assert warning.startswith(f"hardware.compilation_cache_dir={blocked}/cache cannot be used (Not a directory)")
    assert (tmp_path / "run" / "summary.json").exists()


_WRITE_ONE_PROGRAM = """
import sys, warnings
import jax
from jaxclf.compilation_cache import use_compilation_cache
warnings.simplefilter("error")  # JAX reports a failed cache write as a warning
use_compilation_cache(sys.argv[1])
jax.jit(lambda x: x * 3 + 1)(1.0).block_until_ready()
"""


def test_programs_cached_without_a_last_use_stamp_do_not_stop_new_programs_being_cached(tmp_path):
    # What plain JAX, an older jaxclf or a process killed mid-write leaves: a
    # program with no "-atime" stamp, which JAX's bounded cache fails to read
    # before every write.
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "jit_old-0123abcd-cache").write_bytes(b"a program compiled earlier")
    result = subprocess.run(
        [sys.executable, "-c", _WRITE_ONE_PROGRAM, str(cache)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written = {path.name for path in cache.glob("jit__lambda-*-cache")}
    assert len(written) == 1, sorted(path.name for path in cache.iterdir())
    assert (cache / "jit_old-0123abcd-atime").exists()

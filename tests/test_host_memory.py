"""Host memory a training step frees is kept for the next step (glibc's malloc),
not handed back to the kernel and mapped and zeroed again every step."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# In a fresh interpreter (the allocator's settings last for the process): the
# digits ViT's training step, whose 46 MiB of XLA temporaries is above glibc's
# default mmap threshold, set up through hardware.setup as a run does; then
# the minor page faults per step once every worker thread has run it.
_FAULTS_PER_STEP = """
import functools, resource, sys
sys.path.insert(0, "bench")
import jax
from jaxclf.hardware import setup
from jaxclf.config.schema import HardwareConfig
from jaxclf.build import build_classifier
from jaxclf.train_state import train_step
from workload import composed, random_batch

setup(HardwareConfig(keep_host_memory=sys.argv[1] == "true", compilation_cache_dir=None))
cfg = composed(["model=vit", "data=digits", "~recipe"])
classifier = build_classifier(cfg)
state = jax.jit(classifier.init)(jax.random.PRNGKey(0))
batch = random_batch(cfg, 128, pixels=False)
step = jax.jit(functools.partial(train_step, objective=classifier.objective), donate_argnums=0)
def steps(count):
    global state
    for _ in range(count):
        state, _ = step(state, batch)
    jax.block_until_ready(state)
steps(20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
steps(10)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def _faults_per_step(keep: bool) -> float:
    result = subprocess.run(
        [sys.executable, "-c", _FAULTS_PER_STEP, str(keep).lower()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return float(result.stdout.split()[-1])


@pytest.mark.slow  # ~27 s on 2 cores
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_a_repeated_training_step_maps_no_new_host_memory():
    kept, returned = _faults_per_step(keep=True), _faults_per_step(keep=False)
    assert returned > 5_000, returned  # glibc's defaults: the temporaries are mapped and zeroed anew (~11,900)
    assert kept < 200, kept  # kept: a few pages of Python's own per step

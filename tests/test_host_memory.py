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
# default mmap threshold; the minor page faults per step once every worker
# thread has run it, first with glibc's defaults, then after hardware.setup
# has set the allocator up as a run's does.
_FAULTS_PER_STEP = """
import functools, resource, sys
sys.path.insert(0, "bench")
import jax
from jaxclf.hardware import setup
from jaxclf.hardware_config import HardwareConfig
from jaxclf.run import build_classifier
from jaxclf.train_state import train_step
from workload import composed, random_batch

cfg = composed(["model=vit", "data=digits", "~recipe"])
classifier = build_classifier(cfg)
state = jax.jit(classifier.init)(jax.random.PRNGKey(0))
batch = random_batch(cfg, 128, pixels=False)
step = jax.jit(functools.partial(train_step, objective=classifier.objective), donate_argnums=0)
def faults_per_step():
    global state
    for count in (20, 10):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(count):
            state, _ = step(state, batch)
        jax.block_until_ready(state)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / count
print(faults_per_step())
setup(HardwareConfig(keep_host_memory=True, compilation_cache_dir=None))
print(faults_per_step())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_a_repeated_training_step_maps_no_new_host_memory():
    result = subprocess.run(
        [sys.executable, "-c", _FAULTS_PER_STEP], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    returned, kept = map(float, result.stdout.split()[-2:])
    assert returned > 5_000, returned  # glibc's defaults: the temporaries are mapped and zeroed anew (~11,900)
    assert kept < 200, kept  # kept: a few pages of Python's own per step

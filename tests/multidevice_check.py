"""Trains the default model for 20 steps on several meshes of 8 virtual CPU
devices and prints, as JSON, how far each mesh's parameters are from one
device's, and how each mesh placed the largest parameter.

Run by ``tests/test_scale_out.py`` in a fresh process (the CPU device count
is fixed when JAX starts): ``python tests/multidevice_check.py DATA_DIR``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import jax

jax.config.update("jax_num_cpu_devices", 8)

import numpy as np  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

import jaxclf.config.schema  # noqa: E402, F401  (registers the schema)
from jaxclf import build  # noqa: E402
from jaxclf.hardware import Hardware, make_mesh  # noqa: E402
from jaxclf.trainer import Trainer, TrainerConfig  # noqa: E402

MESHES = {"1 device": (1, 1), "data=8": (8, 1), "data=4 x fsdp=2": (4, 2), "data=2 x fsdp=4": (2, 4)}
STEPS = 20


def train(cfg, hardware: Hardware):
    classifier = build.build_classifier(cfg, hardware)
    data = build.build_data(cfg, hardware)
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(TrainerConfig(max_steps=STEPS), hardware, workdir=workdir)
        state = trainer.fit(classifier, data, seed=0)
        trainer.close()
    data.close()
    return classifier, state


def largest_leaf(tree):
    paths_and_leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return max(paths_and_leaves, key=lambda item: item[1].size)


def on_device(tree, device) -> int:
    """Bytes of ``tree``'s shards that ``device`` holds."""
    return sum(
        shard.data.nbytes
        for leaf in jax.tree.leaves(tree)
        for shard in leaf.addressable_shards
        if shard.device == device
    )


def main(data_dir: str) -> None:
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"data.data_dir={data_dir}", "callbacks=none"])
    report, reference = {}, None
    for name, (data, fsdp) in MESHES.items():
        hardware = Hardware(make_mesh(jax.devices()[: data * fsdp], fsdp), fsdp_min_size=1024)
        classifier, state = train(cfg, hardware)
        params = jax.device_get(state.params)
        reference = params if reference is None else reference
        abstract = classifier.abstract_state()
        path, kernel = largest_leaf(state.params)
        _, first_moment = largest_leaf(state.opt_state)
        device = hardware.mesh.devices.flat[0]
        report[name] = {
            "max_abs_difference": max(
                jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), params, reference))
            ),
            "largest_parameter": jax.tree_util.keystr(path),
            "shape": list(kernel.shape),
            "spec": str(kernel.sharding.spec),
            "shard_shapes": sorted({tuple(shard.data.shape) for shard in kernel.addressable_shards}),
            "optimizer_spec": str(first_moment.sharding.spec),
            "bytes_on_first_device": on_device((state.params, state.opt_state), device),
            "bytes_per_device_rule": hardware.bytes_per_device((abstract.params, abstract.opt_state)),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])

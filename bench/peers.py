"""jaxclf against PyTorch on the same work: training steps/s of the same
architecture, batch, loss (cross-entropy) and optimizer (AdamW), one step per
call on a batch already in memory, on this machine's CPU threads.

Peers: PyTorch eager and ``torch.compile`` (inductor), the ViT built from
PyTorch's own ``nn.TransformerEncoder`` (pre-LayerNorm blocks, GELU, fused
scaled-dot-product attention) to the same shapes and parameter count as
jaxclf's model (timm's ``VisionTransformer`` is the same network, but timm
needs torchvision, which has no CPU build for the installed torch here):

* ``vit``: the small digits ViT (8x8x1 images, patch 2, width 64, depth 4,
  4 heads, MLP ratio 2, global average pooling; batch 128);
* ``vit_ti16``: ViT-Ti/16 at 224x224x3 (width 192, depth 12, 3 heads, class
  token; batch 16).

Both networks are built from the same composed config (``conf/model/``
without the recipes), so the shapes above are read, not repeated.

The peers run in turn for ``--repeats`` rounds in this one process (the
order rotating), every repeat is printed, and the ratios are of medians.
torch is not one of jaxclf's dependencies: install it for this script alone
(``pip install torch``, a CPU build where there is one).

    python bench/peers.py [--models vit vit_ti16] [--steps N] [--repeats 5] [--no-compile] [--glibc-malloc-defaults]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import torch
from omegaconf import DictConfig
from torch import nn

import jaxclf.config.schema  # noqa: F401  (registers the schema)
import record  # bench/ is on sys.path when this script runs
from jaxclf.build import build_classifier
from jaxclf.host_memory import keep_freed_memory
from jaxclf.train_state import train_step
from workload import composed, random_batch  # bench/ is on sys.path when this script runs


@dataclass(frozen=True)
class Workload:
    overrides: tuple[str, ...]  # jaxclf's model and data: the peers' shapes are read from them
    batch_size: int
    steps: int  # timed steps per measurement


WORKLOADS = {
    "vit": Workload(("model=vit", "data=digits", "~recipe"), batch_size=128, steps=20),
    "vit_ti16": Workload(
        ("model=vit_ti16", "data=synthetic", "data.num_classes=1000", "~recipe"), batch_size=16, steps=5
    ),
}


class TorchViT(nn.Module):
    """``cfg``'s ViT in PyTorch's own modules: patch convolution, learned
    position embeddings, pre-LN encoder blocks, final LayerNorm, linear head
    on the class token (``pool=cls``) or the tokens' mean."""

    def __init__(self, cfg: DictConfig):
        super().__init__()
        model, (size, _, channels) = cfg.model, cfg.data.image_shape
        class_token = model.pool == "cls"
        tokens = (size // model.patch_size) ** 2 + int(class_token)
        self.patch = nn.Conv2d(channels, model.hidden_size, model.patch_size, stride=model.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, model.hidden_size)) if class_token else None
        self.position = nn.Parameter(torch.randn(1, tokens, model.hidden_size) * 0.02)
        block = nn.TransformerEncoderLayer(
            model.hidden_size,
            model.num_heads,
            int(model.hidden_size * model.mlp_ratio),
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
            layer_norm_eps=1e-6,
        )
        self.encoder = nn.TransformerEncoder(block, model.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(model.hidden_size, eps=1e-6)
        self.head = nn.Linear(model.hidden_size, cfg.data.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(images).flatten(2).transpose(1, 2)
        if self.cls is not None:
            tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1)
        tokens = self.norm(self.encoder(tokens + self.position))
        return self.head(tokens[:, 0] if self.cls is not None else tokens.mean(dim=1))


def jaxclf_step(cfg: DictConfig, batch_size: int) -> tuple[Callable[[], None], int]:
    """One jitted, donated training step of ``cfg``'s classifier on a fixed batch, and its parameter count."""
    classifier = build_classifier(cfg)
    state = jax.jit(classifier.init)(jax.random.PRNGKey(0))
    batch = random_batch(cfg, batch_size, pixels=False)
    step = jax.jit(functools.partial(train_step, objective=classifier.objective), donate_argnums=0)
    holder = {"state": state}

    def run() -> None:
        holder["state"], _ = step(holder["state"], batch)
        jax.block_until_ready(holder["state"])

    return run, sum(int(leaf.size) for leaf in jax.tree.leaves(state.params))


def torch_step(cfg: DictConfig, batch_size: int, compiled: bool) -> tuple[Callable[[], None], int]:
    """The same step in PyTorch: the same ViT, AdamW, cross-entropy."""
    torch.manual_seed(0)
    model = TorchViT(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    size, _, channels = cfg.data.image_shape
    images = torch.randn(batch_size, channels, size, size)
    labels = torch.randint(0, cfg.data.num_classes, (batch_size,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    return (torch.compile(step) if compiled else step), sum(p.numel() for p in model.parameters())


def steps_per_sec(step: Callable[[], None], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default: 20 and 5)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    parser.add_argument(
        "--glibc-malloc-defaults",
        action="store_true",
        help="leave glibc's malloc as it starts, for every peer (default: as a run's hardware.setup sets it)",
    )
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    if not args.glibc_malloc_defaults:
        keep_freed_memory()  # process-wide: the peers share this process, and so the setting

    allocator = "glibc's defaults" if args.glibc_malloc_defaults else "freed memory kept (hardware.keep_host_memory)"
    print(f"{os.cpu_count()} CPU threads; torch {torch.__version__}, jax {jax.__version__}; malloc: {allocator}")
    for name in args.models:
        workload = WORKLOADS[name]
        cfg = composed([*workload.overrides, "model.attention_impl=xla"])
        batch = workload.batch_size
        peers = {"jaxclf": jaxclf_step(cfg, batch), "torch eager": torch_step(cfg, batch, compiled=False)}
        if not args.no_compile:
            peers["torch.compile"] = torch_step(cfg, batch, compiled=True)
        rates: dict[str, list[float]] = {peer: [] for peer in peers}
        for step, _ in peers.values():
            for _ in range(3):  # warm-up: compilation, allocator
                step()
        order = list(peers)
        for repeat in range(args.repeats):
            for peer in order[repeat % len(order) :] + order[: repeat % len(order)]:
                rates[peer].append(steps_per_sec(peers[peer][0], args.steps or workload.steps))
        counts = {peer: count for peer, (_, count) in peers.items()}
        print(f"\n{name}, batch {workload.batch_size}; parameters: {counts}")
        jaxclf = statistics.median(rates["jaxclf"])
        for peer, values in rates.items():
            median = statistics.median(values)
            each = ", ".join(f"{value:.2f}" for value in values)
            print(f"  {peer:<14} {median:8.2f} steps/s   jaxclf / it: {jaxclf / median:5.2f}   ({each})")


if __name__ == "__main__":
    record.run(main)

"""ResNets (He et al., 2016) with BatchNorm, sized as torchvision's.

BatchNorm normalises with the batch's statistics in training and with running
averages in evaluation. The averages live in the ``batch_stats`` collection,
which the TrainState carries as ``model_state`` and checkpoints save. Under a
data-parallel mesh the batch mean is over the global batch (XLA reduces across
devices), as with synchronised BatchNorm; ``batch_norm_group_size=32`` takes
them over each 32 examples instead, as Goyal et al.'s per-GPU BatchNorm does
(``GroupBatchNorm``).
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxclf.config.choices import Block, Stem
from jaxclf.models.group_batch_norm import GroupBatchNorm

ModuleDef = Any


class BasicBlock(nn.Module):
    """Two 3×3 convolutions (ResNet-18/34)."""

    filters: int
    conv: ModuleDef
    norm: ModuleDef
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv, norm = self.conv, self.norm
        residual = x
        y = nn.relu(norm()(conv(self.filters, (3, 3), self.strides)(x)))
        y = norm(scale_init=nn.initializers.zeros)(conv(self.filters, (3, 3))(y))  # blocks start as identities
        if residual.shape != y.shape:
            residual = norm()(conv(self.filters, (1, 1), self.strides, name="downsample")(residual))
        return nn.relu(residual + y)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided, as torchvision's v1.5), 1×1 expand ×4 (ResNet-50)."""

    filters: int
    conv: ModuleDef
    norm: ModuleDef
    strides: int = 1
    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv, norm = self.conv, self.norm
        residual = x
        y = nn.relu(norm()(conv(self.filters, (1, 1))(x)))
        y = nn.relu(norm()(conv(self.filters, (3, 3), self.strides)(y)))
        y = norm(scale_init=nn.initializers.zeros)(conv(self.filters * self.expansion, (1, 1))(y))
        if residual.shape != y.shape:
            residual = norm()(conv(self.filters * self.expansion, (1, 1), self.strides, name="downsample")(residual))
        return nn.relu(residual + y)


class ResNet(nn.Module):
    """Stem, four stages of residual blocks (64, 128, 256, 512 filters), global average pool, dense head.

    ``stem="imagenet"``: 7×7/2 convolution and 3×3/2 max pool (224×224 inputs).
    ``stem="cifar"``: one 3×3/1 convolution, no pooling (small images)."""

    num_classes: int
    stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
    block: Block = Block.basic
    stem: Stem = Stem.imagenet
    width: int = 64
    batch_norm_momentum: float = 0.9
    batch_norm_group_size: Optional[int] = None  # None: statistics over the whole (global) batch
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
        conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, padding="SAME")
        norm_type: ModuleDef = nn.BatchNorm
        if self.batch_norm_group_size is not None:
            norm_type = functools.partial(GroupBatchNorm, self.batch_norm_group_size)
        norm = functools.partial(
            norm_type,
            use_running_average=not train,
            momentum=self.batch_norm_momentum,
            epsilon=1e-5,
            dtype=self.dtype,
        )
        block_type = BasicBlock if Block(self.block) == Block.basic else Bottleneck
        x = images.astype(self.dtype)
        if Stem(self.stem) == Stem.imagenet:
            x = conv(self.width, (7, 7), 2, padding=[(3, 3), (3, 3)], name="stem_conv")(x)
            x = nn.relu(norm(name="stem_norm")(x))
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        else:
            x = nn.relu(norm(name="stem_norm")(conv(self.width, (3, 3), name="stem_conv")(x)))
        for stage, num_blocks in enumerate(self.stage_sizes):
            for index in range(num_blocks):
                strides = 2 if stage > 0 and index == 0 else 1
                x = block_type(self.width * 2**stage, conv, norm, strides, name=f"stage{stage + 1}_block{index + 1}")(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)

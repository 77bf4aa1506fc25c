"""A plain convolutional network for small images (the digits, CIFAR-sized)."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class CNN(nn.Module):
    """Stages of (3×3 convolution, BatchNorm, ReLU) × ``convs_per_stage`` at
    the stage's width, a 2×2 max pool between stages, global average pooling,
    dropout, and a dense head. BatchNorm's running averages live in
    ``batch_stats``, as in the ResNets."""

    num_classes: int
    widths: tuple[int, ...] = (32, 64, 128)
    convs_per_stage: int = 2
    dropout_rate: float = 0.0
    batch_norm_momentum: float = 0.9
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
        conv = functools.partial(nn.Conv, kernel_size=(3, 3), padding="SAME", use_bias=False, dtype=self.dtype)
        norm = functools.partial(
            nn.BatchNorm, use_running_average=not train, momentum=self.batch_norm_momentum, dtype=self.dtype
        )
        x = images.astype(self.dtype)
        for stage, width in enumerate(self.widths):
            if stage > 0:
                x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
            for _ in range(self.convs_per_stage):
                x = nn.relu(norm()(conv(width)(x)))
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)

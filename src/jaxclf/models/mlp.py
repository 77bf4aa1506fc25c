"""Dense classifiers on flattened pixels: softmax regression and an MLP."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class Linear(nn.Module):
    """Softmax regression: logits are an affine function of the pixels."""

    num_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
        del train  # Nothing behaves differently in training.
        features = images.reshape(images.shape[0], -1).astype(self.dtype)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(features)
        return logits.astype(jnp.float32)


class MLP(nn.Module):
    """Fully connected ReLU layers, optional dropout, then a linear head."""

    num_classes: int
    hidden_sizes: tuple[int, ...] = (256, 256)
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
        x = images.reshape(images.shape[0], -1).astype(self.dtype)
        for index, width in enumerate(self.hidden_sizes):
            x = nn.relu(nn.Dense(width, dtype=self.dtype, name=f"hidden_{index}")(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
        return logits.astype(jnp.float32)

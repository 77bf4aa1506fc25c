"""How images enter a Transformer and how logits leave it.

``Patch`` turns images ``[B, H, W, C]`` into tokens ``[B, T, D]``: a strided
convolution cuts non-overlapping patches and embeds each one, position
embeddings say where each patch came from, and with ``pool="cls"`` a learned
class token is prepended. ``ClassifierHead`` pools the encoded tokens (the
class token, or the global average) and maps them to logits.
"""

from __future__ import annotations

from typing import Any, Optional

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxclf.config.choices import Pool, PositionEmbedding
from jaxclf.config.rules import check_patch_size, check_sincos2d_width


def sincos2d_embedding(
    grid_height: int, grid_width: int, hidden_size: int, temperature: float = 10_000.0
) -> np.ndarray:
    """Fixed 2-D sine-cosine position embeddings ``[1, H*W, D]`` (MoCo v3, big_vision)."""
    check_sincos2d_width(hidden_size)
    y, x = np.mgrid[:grid_height, :grid_width]
    omega = 1.0 / temperature ** (np.arange(hidden_size // 4) / (hidden_size // 4 - 1 or 1))
    y_angles = y.reshape(-1, 1) * omega
    x_angles = x.reshape(-1, 1) * omega
    embedding = np.concatenate([np.sin(x_angles), np.cos(x_angles), np.sin(y_angles), np.cos(y_angles)], axis=1)
    return embedding[None].astype(np.float32)


class Patch(nn.Module):
    """Images ``[B, H, W, C]`` -> tokens ``[B, T, hidden_size]``, position
    embeddings added, a class token first when ``pool="cls"``."""

    patch_size: int
    hidden_size: int
    posemb: PositionEmbedding = PositionEmbedding.learned
    pool: Pool = Pool.cls
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        check_patch_size(images.shape[1:], self.patch_size)
        patches = nn.Conv(
            self.hidden_size,
            (self.patch_size, self.patch_size),
            strides=self.patch_size,
            padding="VALID",
            dtype=self.dtype,
            name="embedding",
        )(images.astype(self.dtype))
        grid_height, grid_width = patches.shape[1:3]
        tokens = einops.rearrange(patches, "b h w d -> b (h w) d")
        with_class_token = Pool(self.pool) == Pool.cls
        if with_class_token:
            class_token = self.param("class_token", nn.initializers.zeros, (1, 1, self.hidden_size))
            tokens = jnp.concatenate([jnp.tile(class_token, (tokens.shape[0], 1, 1)).astype(tokens.dtype), tokens], 1)
        embedding: jax.Array | np.ndarray
        if PositionEmbedding(self.posemb) == PositionEmbedding.learned:  # one per token, class token too (as timm)
            embedding = self.param(
                "position_embedding", nn.initializers.normal(stddev=0.02), (1, tokens.shape[1], self.hidden_size)
            )
        else:  # fixed; the class token gets none
            embedding = sincos2d_embedding(grid_height, grid_width, self.hidden_size)
            if with_class_token:
                embedding = np.concatenate([np.zeros((1, 1, self.hidden_size), np.float32), embedding], 1)
        return tokens + embedding.astype(tokens.dtype)


class ClassifierHead(nn.Module):
    """Pools encoded tokens (the class token, or their mean) and maps them to float32 logits.

    With ``representation_size``, a Dense + tanh "pre-logits" layer of that
    width comes first (the original ViT's; big_vision's ``rep_size``)."""

    num_classes: int
    pool: Pool = Pool.cls
    zero_init: bool = False  # start from uniform predictions (big_vision's default)
    dtype: Any = jnp.float32
    representation_size: Optional[int] = None

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        pooled = tokens[:, 0] if Pool(self.pool) == Pool.cls else jnp.mean(tokens, axis=1)
        if self.representation_size:
            pooled = nn.tanh(nn.Dense(self.representation_size, dtype=self.dtype, name="pre_logits")(pooled))
        kernel_init = nn.initializers.zeros if self.zero_init else nn.linear.default_kernel_init
        logits = nn.Dense(self.num_classes, kernel_init=kernel_init, dtype=self.dtype, name="dense")(pooled)
        return logits.astype(jnp.float32)

"""A pre-LayerNorm Transformer encoder: the backbone of the ViT.

Attention goes through ``jax.nn.dot_product_attention``: on a GPU with
bfloat16 or float16 activations and a head size cuDNN serves, its fused
flash-attention kernel (``implementation="cudnn"``); elsewhere XLA's own
(``choose_attention``). Dropout and stochastic depth act only with
``train=True``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxclf.config.choices import AttentionImpl
from jaxclf.config.rules import check_num_heads

logger = logging.getLogger(__name__)

CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)
MAX_CUDNN_HEAD_SIZE = 128  # every GPU cuDNN's flash attention supports (256 from Hopper on)


def cudnn_problem(platform: str, dtype: Any, head_size: int) -> str | None:
    """Why cuDNN's fused attention cannot serve this case, or None if it can."""
    if platform != "gpu":
        return f"it runs on GPUs only (this is {platform})"
    if jnp.dtype(dtype) not in [jnp.dtype(allowed) for allowed in CUDNN_DTYPES]:
        return f"it needs bfloat16 or float16 activations (hardware.compute_dtype is {jnp.dtype(dtype).name})"
    if head_size > MAX_CUDNN_HEAD_SIZE or head_size % 8:
        return f"the head size must be a multiple of 8 up to {MAX_CUDNN_HEAD_SIZE} (it is {head_size})"
    return None


def choose_attention(
    requested: AttentionImpl | str, platform: str, dtype: Any, head_size: int
) -> Literal["xla", "cudnn"]:
    """``"cudnn"`` or ``"xla"``: what ``requested`` means on ``platform`` for
    ``dtype`` activations and heads of ``head_size``. ``auto`` logs its choice
    once; ``cudnn`` where cuDNN cannot serve raises a one-line ``ValueError``."""
    requested = AttentionImpl(requested)
    problem = cudnn_problem(platform, dtype, head_size)
    if requested == AttentionImpl.cudnn and problem:
        raise ValueError(f"attention_impl=cudnn cannot be used: {problem}; use attention_impl=auto or xla")
    if requested != AttentionImpl.auto:
        return "cudnn" if requested == AttentionImpl.cudnn else "xla"
    chosen: Literal["xla", "cudnn"] = "xla" if problem else "cudnn"
    _log_once(f"Attention: {chosen}" + (f" (cuDNN's fused kernel not used: {problem})" if problem else " (fused)"))
    return chosen


@functools.cache
def _log_once(message: str) -> None:
    logger.info(message)  # traced several times (init, train, eval): said once


class SelfAttention(nn.Module):
    """Multi-head self-attention: one fused query/key/value projection, then an output projection."""

    num_heads: int
    dtype: Any = jnp.float32
    implementation: AttentionImpl = AttentionImpl.auto

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        hidden_size = tokens.shape[-1]
        head_size = hidden_size // self.num_heads
        qkv = nn.DenseGeneral((3, self.num_heads, head_size), dtype=self.dtype, name="qkv")(tokens)
        query, key, value = (qkv[:, :, index] for index in range(3))  # each [B, T, heads, head_size]
        implementation = choose_attention(self.implementation, jax.default_backend(), query.dtype, head_size)
        attended = jax.nn.dot_product_attention(query, key, value, implementation=implementation)
        return nn.DenseGeneral(hidden_size, axis=(-2, -1), dtype=self.dtype, name="out")(attended)


class FeedForward(nn.Module):
    """The block's MLP: Dense -> GELU -> dropout -> Dense."""

    hidden_size: int
    mlp_size: int
    dropout: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array, *, train: bool) -> jax.Array:
        x = nn.Dense(self.mlp_size, dtype=self.dtype, name="fc1")(tokens)
        x = nn.Dropout(self.dropout, deterministic=not train)(nn.gelu(x))
        return nn.Dense(self.hidden_size, dtype=self.dtype, name="fc2")(x)


class DropPath(nn.Module):
    """Stochastic depth: drops a residual branch for whole examples with
    probability ``rate`` and rescales the kept ones by ``1 / (1 - rate)``."""

    rate: float

    @nn.compact
    def __call__(self, branch: jax.Array, *, train: bool) -> jax.Array:
        if not train or self.rate == 0.0:
            return branch
        keep = 1.0 - self.rate
        mask_shape = (branch.shape[0],) + (1,) * (branch.ndim - 1)
        kept = jax.random.bernoulli(self.make_rng("dropout"), keep, mask_shape)
        return jnp.where(kept, branch / keep, jnp.zeros_like(branch))


class EncoderBlock(nn.Module):
    """``x + DropPath(Attention(LN(x)))``, then ``x + DropPath(MLP(LN(x)))``."""

    num_heads: int
    mlp_size: int
    dropout: float = 0.0
    drop_path: float = 0.0
    dtype: Any = jnp.float32
    attention_impl: AttentionImpl = AttentionImpl.auto

    @nn.compact
    def __call__(self, tokens: jax.Array, *, train: bool) -> jax.Array:
        branch = SelfAttention(self.num_heads, self.dtype, self.attention_impl, name="attention")(
            nn.LayerNorm(dtype=self.dtype, name="norm1")(tokens)
        )
        branch = nn.Dropout(self.dropout, deterministic=not train)(branch)
        tokens = tokens + DropPath(self.drop_path)(branch, train=train)
        branch = FeedForward(tokens.shape[-1], self.mlp_size, self.dropout, self.dtype, name="mlp")(
            nn.LayerNorm(dtype=self.dtype, name="norm2")(tokens), train=train
        )
        branch = nn.Dropout(self.dropout, deterministic=not train)(branch)
        return tokens + DropPath(self.drop_path)(branch, train=train)


class TransformerBackbone(nn.Module):
    """``depth`` encoder blocks and a final LayerNorm over tokens ``[B, T, hidden_size]``.

    Stochastic depth grows linearly with depth, from 0 at the first block to
    ``drop_path`` at the last (as in DeiT and timm)."""

    hidden_size: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    drop_path: float = 0.0
    dtype: Any = jnp.float32
    attention_impl: AttentionImpl = AttentionImpl.auto

    def __post_init__(self) -> None:
        check_num_heads(self.hidden_size, self.num_heads)
        super().__post_init__()

    @nn.compact
    def __call__(self, tokens: jax.Array, *, train: bool = False) -> jax.Array:
        mlp_size = int(self.hidden_size * self.mlp_ratio)
        for index in range(self.depth):
            rate = self.drop_path * index / max(self.depth - 1, 1)
            block = EncoderBlock(
                self.num_heads, mlp_size, self.dropout, rate, self.dtype, self.attention_impl, name=f"block_{index}"
            )
            tokens = block(tokens, train=train)
        return nn.LayerNorm(dtype=self.dtype, name="norm")(tokens)

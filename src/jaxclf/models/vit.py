"""The Vision Transformer: a Patch modality, a Transformer backbone, a classifier head."""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxclf.config.choices import AttentionImpl, Pool, PositionEmbedding
from jaxclf.config.rules import check_num_heads
from jaxclf.models.backbone import TransformerBackbone
from jaxclf.models.modalities import ClassifierHead, Patch


class ViT(nn.Module):
    """ViT (Dosovitskiy et al., 2021): images -> patch tokens -> encoder -> pooled logits."""

    num_classes: int
    patch_size: int = 16
    hidden_size: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    drop_path: float = 0.0
    posemb: PositionEmbedding = PositionEmbedding.learned
    pool: Pool = Pool.cls
    head_zero_init: bool = False
    representation_size: Optional[int] = None  # a Dense + tanh pre-logits layer of this width (None: none)
    dtype: Any = jnp.float32
    attention_impl: AttentionImpl = AttentionImpl.auto  # cuDNN's fused kernel where it serves (GPU, bf16/f16)

    def __post_init__(self) -> None:
        check_num_heads(self.hidden_size, self.num_heads)
        super().__post_init__()

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
        tokens = Patch(self.patch_size, self.hidden_size, self.posemb, self.pool, self.dtype, name="patch")(images)
        tokens = nn.Dropout(self.dropout, deterministic=not train)(tokens)
        tokens = TransformerBackbone(
            self.hidden_size,
            self.depth,
            self.num_heads,
            self.mlp_ratio,
            self.dropout,
            self.drop_path,
            self.dtype,
            self.attention_impl,
            name="backbone",
        )(tokens, train=train)
        head = ClassifierHead(
            self.num_classes, self.pool, self.head_zero_init, self.dtype, self.representation_size, name="head"
        )
        return head(tokens)

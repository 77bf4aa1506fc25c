"""The models' closed choices (Enums the config schema checks) and the rules
between their sizes.

They live apart from the modules and import nothing heavy, so that a config
is composed and validated before JAX and Flax are imported.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence


class Pool(str, enum.Enum):
    """How a Transformer's tokens become one vector for the classifier head."""

    cls = "cls"  # a learned class token, prepended
    gap = "gap"  # the global average of the tokens


class PositionEmbedding(str, enum.Enum):
    learned = "learned"
    sincos2d = "sincos2d"  # fixed 2-D sine-cosine (MoCo v3, big_vision)


class AttentionImpl(str, enum.Enum):
    auto = "auto"  # cuDNN where it can serve the shape and dtype, else XLA
    xla = "xla"
    cudnn = "cudnn"


class Stem(str, enum.Enum):
    """A ResNet's first layers."""

    imagenet = "imagenet"  # 7x7/2 convolution and 3x3/2 max pool (224x224 inputs)
    cifar = "cifar"  # one 3x3/1 convolution, no pooling (small images)


class Block(str, enum.Enum):
    """A ResNet's residual block."""

    basic = "basic"  # two 3x3 convolutions (ResNet-18/34)
    bottleneck = "bottleneck"  # 1x1, 3x3, 1x1 x4 (ResNet-50)


def check_num_heads(hidden_size: int, num_heads: int) -> None:
    """Raises a one-line ``ValueError`` unless the heads split the width evenly."""
    if num_heads <= 0 or hidden_size % num_heads:
        raise ValueError(
            f"num_heads={num_heads} does not divide hidden_size={hidden_size}; "
            "choose a positive head count that divides the width"
        )


def check_patch_size(image_shape: Sequence[int], patch_size: int) -> None:
    """Raises a one-line ``ValueError`` unless patches tile the image exactly."""
    height, width = image_shape[:2]
    if patch_size <= 0 or height % patch_size or width % patch_size:
        raise ValueError(
            f"patch_size={patch_size} does not divide the image shape {list(image_shape)}; "
            "choose a patch size that divides both height and width"
        )


def check_sincos2d_width(hidden_size: int) -> None:
    """Raises a one-line ``ValueError`` unless the width splits into the 4 sine-cosine parts."""
    if hidden_size % 4:
        raise ValueError(f"hidden_size={hidden_size} is not valid with posemb=sincos2d; it must be a multiple of 4")


def check_group_size(batch_size: int, group_size: int) -> None:
    """A one-line ``ValueError`` unless ``group_size`` divides the ``batch_size`` each step sees."""
    if group_size <= 0 or batch_size % group_size:
        raise ValueError(
            f"batch_norm_group_size={group_size} is not valid; it must be a positive divisor of the batch "
            f"each step sees ({batch_size})"
        )

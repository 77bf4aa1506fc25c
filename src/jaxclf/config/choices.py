"""The closed choices of config values: split names, platforms and dtypes,
what a callback monitors, how the learning rate decays, how a model pools and embeds.

Plain Enums, importable without JAX, so the config schema checks them
before JAX and Flax are imported.
"""

from __future__ import annotations

import enum


class MetricName(str, enum.Enum):
    """What an evaluation reports (``top5_accuracy`` only with more than ``evaluation.top5_min_classes``)."""

    accuracy = "accuracy"
    loss = "loss"
    nll = "nll"
    ece = "ece"
    brier = "brier"
    top5_accuracy = "top5_accuracy"


class MetricMode(str, enum.Enum):
    """Whether a higher (max) or lower (min) value of a metric is better."""

    max = "max"
    min = "min"


class Decay(str, enum.Enum):
    """How the learning rate falls after its warmup."""

    cosine = "cosine"  # to 0 at total_steps
    step = "step"  # times decay_factor at each of decay_steps


class MomentDtype(str, enum.Enum):
    """The dtype Adam keeps its first moment in (big_vision: bfloat16, half the memory)."""

    float32 = "float32"
    bfloat16 = "bfloat16"


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


class SplitName(str, enum.Enum):
    """The one vocabulary of split names: data roles, evaluation and summary keys."""

    train = "train"
    validation = "validation"
    test = "test"


class NonFinitePolicy(str, enum.Enum):
    stop = "stop"  # end the run (exit code 3), naming the step and the last good checkpoint
    skip = "skip"  # carry on, counting train/skipped_steps


class Platform(str, enum.Enum):
    cpu = "cpu"
    gpu = "gpu"
    tpu = "tpu"


class ComputeDtype(str, enum.Enum):
    """The dtype of activations; parameters stay float32."""

    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"

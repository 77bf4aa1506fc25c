"""The built-in targets' config schemas (models, optimizers, losses, callbacks)
and their arguments' ranges, generated from their signatures by
``python tools/write_schemas.py``: do not edit.

Composing and validating a config with them imports neither JAX nor Flax.
"""

import dataclasses
from typing import Any, Optional

from omegaconf import MISSING

from jaxclf.config.choices import (
    AttentionImpl,
    Block,
    Decay,
    MetricMode,
    MetricName,
    MomentDtype,
    Pool,
    PositionEmbedding,
    SplitName,
    Stem,
)
from jaxclf.config.resumable import resumable
from jaxclf.config.rules import OFF_OR_POSITIVE, POSITIVE, POSITIVE_INTEGER, UNIT_INTERVAL, Range


@dataclasses.dataclass
class Builds_Linear:
    _target_: str = "jaxclf.models.mlp.Linear"
    num_classes: Any = "${data.num_classes}"
    dtype: Any = "${hardware.compute_dtype}"


@dataclasses.dataclass
class Builds_MLP:
    _target_: str = "jaxclf.models.mlp.MLP"
    num_classes: Any = "${data.num_classes}"
    hidden_sizes: tuple[int, ...] = (256, 256)
    dropout_rate: float = 0.0
    dtype: Any = "${hardware.compute_dtype}"


@dataclasses.dataclass
class Builds_ViT:
    _target_: str = "jaxclf.models.vit.ViT"
    num_classes: Any = "${data.num_classes}"
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
    representation_size: Optional[int] = None
    dtype: Any = "${hardware.compute_dtype}"
    attention_impl: AttentionImpl = AttentionImpl.auto


@dataclasses.dataclass
class Builds_ResNet:
    _target_: str = "jaxclf.models.resnet.ResNet"
    num_classes: Any = "${data.num_classes}"
    stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
    block: Block = Block.basic
    stem: Stem = Stem.imagenet
    width: int = 64
    batch_norm_momentum: float = 0.9
    batch_norm_group_size: Optional[int] = None
    dtype: Any = "${hardware.compute_dtype}"


@dataclasses.dataclass
class Builds_CNN:
    _target_: str = "jaxclf.models.cnn.CNN"
    num_classes: Any = "${data.num_classes}"
    widths: tuple[int, ...] = (32, 64, 128)
    convs_per_stage: int = 2
    dropout_rate: float = 0.0
    batch_norm_momentum: float = 0.9
    dtype: Any = "${hardware.compute_dtype}"


@dataclasses.dataclass
class Builds_adamw:
    _target_: str = "jaxclf.optim.adamw"
    learning_rate: float = MISSING
    weight_decay: float = MISSING
    warmup_steps: int = MISSING
    total_steps: Any = resumable("${trainer.max_steps}")
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-08
    grad_clip_norm: Optional[float] = None
    decay: Decay = Decay.cosine
    decay_steps: tuple[int, ...] = ()
    decay_factor: float = 0.1
    warmup_from: float = 0.0
    decay_only_kernels: bool = True
    mu_dtype: MomentDtype = MomentDtype.float32


@dataclasses.dataclass
class Builds_sgd:
    _target_: str = "jaxclf.optim.sgd"
    learning_rate: float = MISSING
    weight_decay: float = MISSING
    warmup_steps: int = MISSING
    total_steps: Any = resumable("${trainer.max_steps}")
    momentum: float = 0.9
    nesterov: bool = False
    grad_clip_norm: Optional[float] = None
    decay: Decay = Decay.cosine
    decay_steps: tuple[int, ...] = ()
    decay_factor: float = 0.1
    warmup_from: float = 0.0
    decay_only_kernels: bool = True


@dataclasses.dataclass
class Builds_Objective:
    _target_: str = "jaxclf.objectives.Objective"
    loss_fn: Any = MISSING
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0


@dataclasses.dataclass
class Builds_Distillation:
    _target_: str = "jaxclf.objectives.Distillation"
    loss_fn: Any = MISSING
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    teacher: Any = None
    temperature: float = 4.0
    alpha: float = 0.9


@dataclasses.dataclass
class Builds_PeriodicEvaluation:
    _target_: str = "jaxclf.callbacks.PeriodicEvaluation"
    every_steps: int = MISSING
    splits: Any = (SplitName.validation,)
    at_end: bool = False


@dataclasses.dataclass
class Builds_ModelCheckpoint:
    _target_: str = "jaxclf.callbacks.ModelCheckpoint"
    every_steps: int = MISSING
    max_to_keep: int = 3
    monitor: Optional[MetricName] = None
    mode: MetricMode = MetricMode.max
    split: SplitName = SplitName.validation


@dataclasses.dataclass
class Builds_EarlyStopping:
    _target_: str = "jaxclf.callbacks.EarlyStopping"
    monitor: MetricName = MISSING
    mode: MetricMode = MetricMode.max
    patience: int = 5
    min_delta: float = 0.0
    split: SplitName = SplitName.validation


@dataclasses.dataclass
class Builds_ProgressBar:
    _target_: str = "jaxclf.callbacks.ProgressBar"


@dataclasses.dataclass
class Builds_TensorBoardLogger:
    _target_: str = "jaxclf.callbacks.TensorBoardLogger"
    every_steps: int = MISSING
    split_names: Any = None
    images: bool = True
    mistakes: int = 16


@dataclasses.dataclass
class Builds_Profiler:
    _target_: str = "jaxclf.callbacks.Profiler"
    start_step: int = 10
    num_steps: int = 10


@dataclasses.dataclass
class Builds_TemperatureScaling:
    _target_: str = "jaxclf.callbacks.TemperatureScaling"


@dataclasses.dataclass
class Builds_softmax_cross_entropy:
    _target_: str = "jaxclf.losses.softmax_cross_entropy"
    logits: Any = MISSING
    targets: Any = MISSING


@dataclasses.dataclass
class Builds_sigmoid_cross_entropy:
    _target_: str = "jaxclf.losses.sigmoid_cross_entropy"
    logits: Any = MISSING
    targets: Any = MISSING


@dataclasses.dataclass
class Builds_focal_loss:
    _target_: str = "jaxclf.losses.focal_loss"
    logits: Any = MISSING
    targets: Any = MISSING
    gamma: float = 2.0


# The options' schemas, by their name in Hydra's ConfigStore.
SCHEMAS: dict[str, Any] = {
    "schema_linear": Builds_Linear,
    "schema_mlp": Builds_MLP,
    "schema_vit": Builds_ViT,
    "schema_resnet": Builds_ResNet,
    "schema_cnn": Builds_CNN,
    "schema_adamw": Builds_adamw,
    "schema_sgd": Builds_sgd,
    "schema_objective": Builds_Objective,
    "schema_distillation": Builds_Distillation,
}

# Every built-in target's schema, by its _target_.
TARGETS: dict[str, Any] = {
    "jaxclf.models.mlp.Linear": Builds_Linear,
    "jaxclf.models.mlp.MLP": Builds_MLP,
    "jaxclf.models.vit.ViT": Builds_ViT,
    "jaxclf.models.resnet.ResNet": Builds_ResNet,
    "jaxclf.models.cnn.CNN": Builds_CNN,
    "jaxclf.optim.adamw": Builds_adamw,
    "jaxclf.optim.sgd": Builds_sgd,
    "jaxclf.objectives.Objective": Builds_Objective,
    "jaxclf.objectives.Distillation": Builds_Distillation,
    "jaxclf.callbacks.PeriodicEvaluation": Builds_PeriodicEvaluation,
    "jaxclf.callbacks.ModelCheckpoint": Builds_ModelCheckpoint,
    "jaxclf.callbacks.EarlyStopping": Builds_EarlyStopping,
    "jaxclf.callbacks.ProgressBar": Builds_ProgressBar,
    "jaxclf.callbacks.TensorBoardLogger": Builds_TensorBoardLogger,
    "jaxclf.callbacks.Profiler": Builds_Profiler,
    "jaxclf.callbacks.TemperatureScaling": Builds_TemperatureScaling,
    "jaxclf.losses.softmax_cross_entropy": Builds_softmax_cross_entropy,
    "jaxclf.losses.sigmoid_cross_entropy": Builds_sigmoid_cross_entropy,
    "jaxclf.losses.focal_loss": Builds_focal_loss,
}

# The ranges on the built-in targets' signatures, by _target_ and argument.
RANGES: dict[str, dict[str, Range]] = {
    "jaxclf.objectives.Objective": {
        "label_smoothing": UNIT_INTERVAL,
        "mixup_alpha": OFF_OR_POSITIVE,
        "cutmix_alpha": OFF_OR_POSITIVE,
    },
    "jaxclf.objectives.Distillation": {
        "label_smoothing": UNIT_INTERVAL,
        "mixup_alpha": OFF_OR_POSITIVE,
        "cutmix_alpha": OFF_OR_POSITIVE,
        "temperature": POSITIVE,
        "alpha": UNIT_INTERVAL,
    },
    "jaxclf.callbacks.PeriodicEvaluation": {"every_steps": POSITIVE_INTEGER},
    "jaxclf.callbacks.ModelCheckpoint": {"every_steps": POSITIVE_INTEGER, "max_to_keep": POSITIVE_INTEGER},
    "jaxclf.callbacks.EarlyStopping": {"patience": POSITIVE_INTEGER, "min_delta": OFF_OR_POSITIVE},
    "jaxclf.callbacks.TensorBoardLogger": {"every_steps": POSITIVE_INTEGER, "mistakes": OFF_OR_POSITIVE},
    "jaxclf.callbacks.Profiler": {"start_step": OFF_OR_POSITIVE, "num_steps": POSITIVE_INTEGER},
}

"""The structured-config schema: Hydra validates every composed config against it.

Each group option's YAML starts from one of the ``base_*`` schemas registered
here (``defaults: [base_adamw, _self_]``), so an unknown key or a value of the
wrong type fails when Hydra composes the config, before any JAX work.
Model and loss stay open (``Any``) at the top level so a user's own module or
loss can be plugged in with a YAML file that names its ``_target_``.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING, OmegaConf


class Mode(enum.Enum):
    fit = "fit"  # train, then evaluate the final model on validation and test
    evaluate = "evaluate"  # restore the run's latest checkpoint and evaluate it
    describe = "describe"  # print the model's parameters and FLOPs from shapes alone


@dataclasses.dataclass
class EarlyStoppingConfig:
    """Stop when the validation ``metric`` has not improved by more than
    ``min_delta`` for ``patience`` evaluations; test the best checkpoint."""

    metric: Optional[str] = None  # accuracy | loss | nll | ece | brier | top5_accuracy; None: off
    mode: str = "max"  # max: higher is better | min
    patience: int = 5  # evaluations without improvement
    min_delta: float = 0.0


@dataclasses.dataclass
class TrainerConfig:
    max_steps: int = 1000
    eval_every_steps: int = 200
    checkpoint_every_steps: int = 500
    log_every_steps: int = 50
    # Training steps fused into one jitted call (lax.scan); calls never cross
    # a logging, evaluation or checkpoint boundary.
    steps_per_call: int = 10
    resume: bool = True
    max_checkpoints_to_keep: int = 3
    progress_bar: bool = True
    reliability_diagrams: bool = True  # an image per evaluation in TensorBoard
    # The final evaluation also scores this many training examples, without
    # augmentation: the train-minus-validation gap in summary.json.
    train_eval_examples: int = 10000
    # A NaN or Inf in the loss or gradients: the update is never applied; then
    # stop the run (stop) or carry on, counting train/skipped_steps (skip).
    on_nonfinite: str = "stop"
    early_stopping: EarlyStoppingConfig = dataclasses.field(default_factory=EarlyStoppingConfig)
    # name -> {_target_: ..., **kwargs}: extra jaxclf.callbacks.Callback objects.
    callbacks: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class SplitsConfig:
    """TFDS split names (or split expressions) for each role."""

    train: str = "train"
    validation: Optional[str] = "validation"  # None: hold out data.validation_holdout examples of train
    test: str = "test"


@dataclasses.dataclass
class AugmentConfig:
    """Training-time augmentation (evaluation sees clean images, centre-cropped if encoded)."""

    crop_padding: int = 0  # in-memory images: pad by this many black pixels, crop back at a random shift
    horizontal_flip: bool = False
    inception_crop: bool = False  # encoded images: random area (8-100%) and aspect (3/4-4/3), resized
    randaugment_layers: int = 0  # RandAugment: operations per image (0: off)
    randaugment_magnitude: float = 9.0  # their strength, 0..30


@dataclasses.dataclass
class SyntheticExamplesConfig:
    train: int = 1024
    validation: int = 128
    test: int = 128


@dataclasses.dataclass
class DataConfig:
    name: str = MISSING  # TFDS dataset name, or "synthetic" (random images and labels)
    # Module to import so that a builder outside the TFDS catalog registers.
    builder_module: Optional[str] = None
    data_dir: Optional[str] = None  # None: TFDS's default (~/tensorflow_datasets)
    manual_dir: Optional[str] = None  # downloaded archives, for datasets TFDS cannot fetch (ImageNet)
    num_classes: int = MISSING
    image_shape: list[int] = MISSING  # [height, width, channels]
    # Per-channel normalisation applied to raw pixel values: (x - mean) / std.
    mean: list[float] = MISSING
    std: list[float] = MISSING
    batch_size: int = 128  # global batch size, over all devices and hosts
    eval_batch_size: Optional[int] = None  # None: same as batch_size
    splits: SplitsConfig = dataclasses.field(default_factory=SplitsConfig)
    validation_holdout: int = 0  # examples of train held out as validation (fixed seed), with splits.validation=null
    train_examples: Optional[int] = None  # train on a seeded subset of this many examples
    subset_seed: int = II("seed")
    # True: decode the splits once into host memory. False: keep images encoded, decode per batch.
    in_memory: bool = True
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    prefetch: int = 2  # training batches prepared ahead, in units of one jitted call
    workers: int = 4  # host threads reading, decoding and augmenting batches
    synthetic_examples: SyntheticExamplesConfig = dataclasses.field(default_factory=SyntheticExamplesConfig)


@dataclasses.dataclass
class HardwareConfig:
    platform: str = "cpu"  # cpu | gpu | tpu
    compute_dtype: str = "float32"  # activations; parameters stay float32
    distributed: bool = False  # call jax.distributed.initialize() (multi-host)


@dataclasses.dataclass
class OptimConfig:
    _target_: str = MISSING
    learning_rate: float = MISSING  # peak, after warmup
    weight_decay: float = 0.0  # decoupled; applied to kernels only (ndim > 1)
    warmup_steps: int = 0
    total_steps: int = II("trainer.max_steps")  # cosine decays to 0 here
    grad_clip_norm: Optional[float] = None


@dataclasses.dataclass
class AdamWConfig(OptimConfig):
    _target_: str = "jaxclf.optim.adamw"
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8


@dataclasses.dataclass
class SGDConfig(OptimConfig):
    _target_: str = "jaxclf.optim.sgd"
    momentum: float = 0.9
    nesterov: bool = False


@dataclasses.dataclass
class LinearConfig:
    _target_: str = "jaxclf.models.mlp.Linear"
    num_classes: int = II("data.num_classes")
    dtype: str = II("hardware.compute_dtype")


@dataclasses.dataclass
class MLPConfig:
    _target_: str = "jaxclf.models.mlp.MLP"
    num_classes: int = II("data.num_classes")
    hidden_sizes: list[int] = dataclasses.field(default_factory=lambda: [256, 256])
    dropout_rate: float = 0.0
    dtype: str = II("hardware.compute_dtype")


@dataclasses.dataclass
class ViTConfig:
    _target_: str = "jaxclf.models.vit.ViT"
    num_classes: int = II("data.num_classes")
    patch_size: int = 16
    hidden_size: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    drop_path: float = 0.0  # stochastic depth at the last block (linear from 0)
    posemb: str = "learned"  # learned | sincos2d
    pool: str = "cls"  # cls (class token) | gap (global average of tokens)
    head_zero_init: bool = False
    dtype: str = II("hardware.compute_dtype")


@dataclasses.dataclass
class ResNetConfig:
    _target_: str = "jaxclf.models.resnet.ResNet"
    num_classes: int = II("data.num_classes")
    stage_sizes: list[int] = dataclasses.field(default_factory=lambda: [2, 2, 2, 2])
    block: str = "basic"  # basic (ResNet-18/34) | bottleneck (ResNet-50)
    stem: str = "imagenet"  # imagenet (7x7/2 + max pool) | cifar (3x3/1)
    width: int = 64
    batch_norm_momentum: float = 0.9
    dtype: str = II("hardware.compute_dtype")


@dataclasses.dataclass
class TargetsConfig:
    """Soft targets: label smoothing, then mixup/cutmix (alpha 0 switches them off)."""

    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0


@dataclasses.dataclass
class SoftmaxCrossEntropyConfig(TargetsConfig):
    _target_: str = "jaxclf.objectives.SoftmaxCrossEntropy"


@dataclasses.dataclass
class SigmoidCrossEntropyConfig(TargetsConfig):
    _target_: str = "jaxclf.objectives.SigmoidCrossEntropy"


@dataclasses.dataclass
class DistillationConfig(TargetsConfig):
    _target_: str = "jaxclf.objectives.distillation_from_run"
    teacher: Optional[str] = None  # run directory of a finished jaxclf run
    temperature: float = 4.0
    alpha: float = 0.9  # weight of the distillation term; 1 - alpha on the targets
    num_classes: int = II("data.num_classes")
    image_shape: list[int] = II("data.image_shape")


@dataclasses.dataclass
class Config:
    model: Any = MISSING
    loss: Any = MISSING
    data: DataConfig = MISSING
    hardware: HardwareConfig = MISSING
    optim: Any = MISSING
    trainer: TrainerConfig = MISSING
    seed: int = 0
    mode: Mode = Mode.fit


def register_configs() -> None:
    """Registers the schema with Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="base_config", node=Config)
    store.store(group="trainer", name="base_trainer", node=TrainerConfig)
    store.store(group="data", name="base_tfds", node=DataConfig)
    store.store(group="hardware", name="base_hardware", node=HardwareConfig)
    store.store(group="optim", name="base_adamw", node=AdamWConfig)
    store.store(group="optim", name="base_sgd", node=SGDConfig)
    store.store(group="model", name="base_linear", node=LinearConfig)
    store.store(group="model", name="base_mlp", node=MLPConfig)
    store.store(group="model", name="base_vit", node=ViTConfig)
    store.store(group="model", name="base_resnet", node=ResNetConfig)
    store.store(group="loss", name="base_softmax_ce", node=SoftmaxCrossEntropyConfig)
    store.store(group="loss", name="base_sigmoid_ce", node=SigmoidCrossEntropyConfig)
    store.store(group="loss", name="base_distill", node=DistillationConfig)


def output_subdir(mode: Any) -> str:
    """Where Hydra keeps a job's resolved config: ``.hydra`` for ``fit``, so that
    ``mode=evaluate`` in the same run directory leaves the run's config intact."""
    name = str(mode).rsplit(".", 1)[-1]  # the resolver sees "Mode.fit"
    return ".hydra" if name == Mode.fit.value else f".hydra-{name}"


register_configs()
if not OmegaConf.has_resolver("jaxclf_output_subdir"):
    OmegaConf.register_new_resolver("jaxclf_output_subdir", output_subdir)

"""The published recipes: composed, each value is the paper's; each runs a few steps end to end.

The expected values are written here from the sources each recipe cites, not
read from the recipes: an epoch count times the training images over the batch.
"""

from __future__ import annotations

import json

import pytest

from conftest import launch_in_process

IMAGENET_TRAIN = 1_281_167 - 12_811  # jaxclf holds out 1% (12,811 images) as validation, as big_vision does
CIFAR_TRAIN = 50_000 - 5_000

RECIPES = {
    # Beyer et al. 2022 / big_vision vit_s16_i1k.py: 90 epochs at batch 1024, Adam 1e-3, decoupled wd 1e-4,
    # 10k warmup, cosine, clip 1, randaug(2, 10), mixup 0.2, GAP, sincos2d, rep_size, value_range(-1, 1).
    "vit_s16_imagenet2012": (
        ("model=vit_s16", "data=imagenet2012"),
        {
            "data.batch_size": 1024,
            "trainer.max_steps": 90 * IMAGENET_TRAIN // 1024,
            "optim._target_": "jaxclf.optim.adamw",
            "optim.learning_rate": 1e-3,
            "optim.weight_decay": 1e-4 / 1e-3,
            "optim.warmup_steps": 10_000,
            "optim.decay": "cosine",
            "optim.grad_clip_norm": 1.0,
            "optim.mu_dtype": "bfloat16",  # optax = dict(mu_dtype='bfloat16')
            "data.augment.randaugment_layers": 2,
            "data.augment.randaugment_magnitude": 10,
            "data.augment.inception_crop": True,
            "data.augment.horizontal_flip": True,
            "loss.mixup_alpha": 0.2,
            "model.pool": "gap",
            "model.posemb": "sincos2d",
            "model.representation_size": 384,
            "model.head_zero_init": True,
            "data.mean": [127.5] * 3,
            "data.std": [127.5] * 3,
        },
    ),
    # big_vision vit_i1k.py:variant=B/16 (AugReg, "medium2"): 300 epochs at batch 4096, randaug(2, 15), mixup 0.5.
    "vit_b16_imagenet2012": (
        ("model=vit_b16", "data=imagenet2012"),
        {
            "data.batch_size": 4096,
            "trainer.max_steps": 300 * IMAGENET_TRAIN // 4096,
            "optim.learning_rate": 1e-3,
            "optim.weight_decay": 1e-4 / 1e-3,
            "optim.warmup_steps": 10_000,
            "optim.grad_clip_norm": 1.0,
            "optim.mu_dtype": "bfloat16",
            "data.augment.randaugment_magnitude": 15,
            "loss.mixup_alpha": 0.5,
            "model.pool": "cls",
            "model.posemb": "learned",
            "model.representation_size": 768,
        },
    ),
    # Goyal et al. 2017: batch 8192, lr 0.1 x 8192 / 256, 5 warmup epochs from 0.1, /10 at 30, 60, 80 of 90 epochs.
    "resnet50_imagenet2012": (
        ("model=resnet50", "data=imagenet2012", "optim=sgd"),
        {
            "data.batch_size": 8192,
            "optim._target_": "jaxclf.optim.sgd",
            "optim.learning_rate": 0.1 * 8192 / 256,
            "optim.warmup_from": 0.1,
            "optim.warmup_steps": round(5 * IMAGENET_TRAIN / 8192),
            "optim.decay": "step",
            "optim.decay_steps": [round(epoch * IMAGENET_TRAIN / 8192) for epoch in (30, 60, 80)],
            "optim.decay_factor": 0.1,
            "trainer.max_steps": round(90 * IMAGENET_TRAIN / 8192),
            "optim.momentum": 0.9,
            "optim.nesterov": False,
            "optim.weight_decay": 1e-4,
            "model.batch_norm_group_size": 32,  # BatchNorm per GPU: 32 images on each of 256
        },
    ),
    # kuangliu/pytorch-cifar: SGD 0.1, momentum 0.9, wd 5e-4, batch 128, /10 at epochs 150 and 250 of 350.
    "resnet18_cifar10": (
        ("model=resnet18", "data=cifar10", "optim=sgd"),
        {
            "model.stem": "cifar",
            "data.batch_size": 128,
            "optim.learning_rate": 0.1,
            "optim.momentum": 0.9,
            "optim.weight_decay": 5e-4,
            "optim.decay_only_kernels": False,  # PyTorch's SGD decays every parameter
            "optim.warmup_steps": 0,
            "optim.decay": "step",
            "optim.decay_steps": [round(epoch * CIFAR_TRAIN / 128) for epoch in (150, 250)],
            "trainer.max_steps": round(350 * CIFAR_TRAIN / 128),
            "data.augment.crop_padding": 4,
            "data.augment.horizontal_flip": True,
        },
    ),
    # kentaroy47/vision-transformers-cifar10 defaults: ViT patch 4, dim 512, depth 6, heads 8, mlp 512, dropout 0.1;
    # Adam 1e-4, cosine over 200 epochs, batch 512, RandAugment(2, 14).
    "vit_cifar10": (
        ("model=vit", "data=cifar10"),
        {
            "model.patch_size": 4,
            "model.hidden_size": 512,
            "model.depth": 6,
            "model.num_heads": 8,
            "model.mlp_ratio": 1.0,
            "model.dropout": 0.1,
            "model.pool": "cls",
            "model.posemb": "learned",
            "data.batch_size": 512,
            "optim.learning_rate": 1e-4,
            "optim.weight_decay": 0.0,
            "optim.warmup_steps": 0,
            "optim.decay": "cosine",
            "trainer.max_steps": round(200 * CIFAR_TRAIN / 512),
            "data.augment.randaugment_layers": 2,
            "data.augment.randaugment_magnitude": 14,
        },
    ),
}


def _value(cfg, key):
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, key)
    value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return value.value if hasattr(value, "value") else value  # Enums by their name


@pytest.mark.parametrize("recipe", RECIPES)
def test_a_recipe_is_chosen_by_its_model_and_data_and_holds_the_published_values(compose, recipe):
    overrides, published = RECIPES[recipe]
    cfg = compose(list(overrides), return_hydra_config=True)
    assert cfg.hydra.runtime.choices["recipe"] == recipe
    for key, expected in published.items():
        assert _value(cfg, key) == pytest.approx(expected), key


@pytest.mark.parametrize(
    ("model", "key", "value"),
    [("vit", "model.patch_size", 4), ("cnn", "trainer.max_steps", 600), ("mlp", "trainer.max_steps", 300)],
)
def test_the_digits_recipes_are_chosen_by_the_model(compose, model, key, value):
    assert _value(compose([f"model={model}"]), key) == value


@pytest.mark.parametrize(
    ("model", "data", "max_steps", "ema_decay"),
    [
        ("cnn", "mnist", 1200, 0.999),
        ("cnn", "fashion_mnist", 2400, 0.999),
        ("vit", "mnist", 3000, 0.999),
        ("mlp", "mnist", 3000, 0.999),
        ("cnn", "mnist_5k", 300, 0.99),
    ],
)
def test_the_real_data_recipes_are_chosen_with_their_measured_budget(compose, model, data, max_steps, ema_decay):
    cfg = compose([f"model={model}", f"data={data}"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices["recipe"] == f"{model}_{data}"
    assert (cfg.trainer.max_steps, cfg.trainer.ema_decay) == (max_steps, ema_decay)


def test_a_momentum_recipe_with_adamw_fails_while_composing(compose):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="momentum"):
        compose(["model=resnet50", "data=imagenet2012"])


SYNTHETIC = {  # data=synthetic shaped like each recipe's dataset
    "imagenet2012": ("data.image_shape=[224,224,3]", "data.num_classes=1000"),
    "cifar10": ("data.image_shape=[32,32,3]", "data.num_classes=10"),
}
SMALL_BATCH = {"resnet50_imagenet2012": ("model.batch_norm_group_size=2",)}  # groups that tile a batch of 4


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_a_recipe_trains_a_few_steps_end_to_end_on_synthetic_data(tmp_path, recipe):
    overrides, _ = RECIPES[recipe]
    dataset = overrides[1].removeprefix("data=")
    code, stderr = launch_in_process(
        *[override for override in overrides if not override.startswith("data=")],
        "data=synthetic",
        *SYNTHETIC[dataset],
        f"recipe={recipe}",
        f"hydra.run.dir={tmp_path}",
        "data.batch_size=4",
        *SMALL_BATCH.get(recipe, ()),
        "data.synthetic_examples.train=8",
        "data.synthetic_examples.validation=4",
        "data.synthetic_examples.test=4",
        "evaluation.train_examples=0",
        "evaluation.splits=[test]",
        "callbacks.temperature_scaling=null",
        "trainer.max_steps=2",
        "callbacks.evaluation=null",
        "callbacks.checkpoint.every_steps=2",
        "callbacks.tensorboard.every_steps=2",
        "callbacks.tensorboard.images=false",
        "callbacks.progress_bar=null",
    )
    assert code == 0, stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["test"]["num_examples"] == 4

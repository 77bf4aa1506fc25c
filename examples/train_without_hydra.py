"""Train your own flax model with jaxclf's Trainer, without Hydra.

A small network of your own on scikit-learn's 8x8 digits (the same train /
validation / test split as ``data=digits``), held in memory as NumPy arrays;
evaluation, TensorBoard and checkpoints are callbacks given to the Trainer.

    python examples/train_without_hydra.py [--steps 300] [--workdir runs/without_hydra]
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import numpy as np
import optax
from sklearn.datasets import load_digits

from jaxclf.callbacks import ModelCheckpoint, PeriodicEvaluation, TensorBoardLogger
from jaxclf.data.digits import split_indices
from jaxclf.data.loader import DataModule, Normalizer, TrainLoader
from jaxclf.data.splits import InMemorySplit
from jaxclf.hardware import HardwareConfig, setup
from jaxclf.objectives import Objective
from jaxclf.train_state import Classifier
from jaxclf.trainer import Trainer, TrainerConfig


class TwoLayerNet(nn.Module):
    """Any linen module that maps images [B, H, W, C] to logits [B, classes] and takes ``train``."""

    num_classes: int = 10
    width: int = 128

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
        x = nn.gelu(nn.Dense(self.width)(images.reshape(len(images), -1)))
        x = nn.Dropout(0.1, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)


def digits() -> dict[str, InMemorySplit]:
    """The digits as uint8 images [N, 8, 8, 1] and int32 labels, by split name."""
    data = load_digits()
    images, labels = data.images.astype(np.uint8)[..., None], data.target.astype(np.int32)
    return {name: InMemorySplit(images[rows], labels[rows]) for name, rows in split_indices().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--workdir", default="runs/without_hydra")
    args = parser.parse_args()

    hardware = setup(HardwareConfig())  # every local CPU device on a `data` mesh axis
    splits = digits()
    data = DataModule(
        train=TrainLoader(splits["train"], batch_size=128, seed=0, hardware=hardware),
        eval_splits=splits,
        eval_batch_size=128,
        num_classes=10,
    )
    classifier = Classifier(
        model=TwoLayerNet(),
        optimizer=optax.adamw(optax.cosine_decay_schedule(3e-3, args.steps)),
        objective=Objective(label_smoothing=0.0),  # softmax cross-entropy against one-hot targets
        image_shape=(8, 8, 1),
        normalize=Normalizer(mean=[4.8859], std=[6.0148]),
    )
    callbacks = [
        PeriodicEvaluation(every_steps=100),
        TensorBoardLogger(every_steps=50),
        ModelCheckpoint(every_steps=100),
    ]
    trainer = Trainer(TrainerConfig(max_steps=args.steps), hardware, callbacks, workdir=args.workdir)
    try:
        state = trainer.fit(classifier, data)  # resumes from args.workdir's checkpoints, if any
        results = trainer.test(classifier, data, state, ["validation", "test"])
    finally:
        trainer.close()
        data.close()
    for split, metrics in results.items():
        print(f"{split}: accuracy {metrics['accuracy']:.4f}, NLL {metrics['nll']:.4f}, ECE {metrics['ece']:.4f}")


if __name__ == "__main__":
    main()

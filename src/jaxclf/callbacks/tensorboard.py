"""The ``tensorboard`` callback: what a run shows in TensorBoard.

Scalars of training (every ``every_steps``, training time only in
``steps_per_sec``) and of each evaluation (under its split's name), each
class's accuracy, the reliability diagram, confusion matrix and the test
set's most confident mistakes as images, the run's HParams row (named after
its directory) and, in the Text tab, its command line, config and parameter
table. Process 0 writes; nothing here makes the device wait.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import jax
import numpy as np
from clu import parameter_overview
from omegaconf import OmegaConf

from jaxclf.callbacks.base import Callback, is_due
from jaxclf.config.choices import SplitName
from jaxclf.config.rules import OffOrPositiveInt, PositiveInt, check_arguments
from jaxclf.evaluation import EvalResults, train_minus_validation_accuracy
from jaxclf.event_writer import TensorBoardWriter
from jaxclf.figures.evaluation import EvaluationFigures
from jaxclf.figures.mistakes import mistakes_grid, most_confident_mistakes
from jaxclf.metrics import LABELLED_CLASSES, per_class_accuracy

if TYPE_CHECKING:
    from jaxclf.run_dir import RunConfig
    from jaxclf.train_state import TrainState
    from jaxclf.trainer import Trainer


class TensorBoardLogger(Callback):
    """Writes the run to TensorBoard event files in the Trainer's ``workdir``
    (with ``TensorBoardWriter``, CLU's writer interface without TensorFlow):
    see the module's docstring. ``split_names`` name the splits' tags;
    ``images`` switches the images off; ``mistakes`` is how many to show."""

    def __init__(
        self,
        every_steps: PositiveInt,
        split_names: Mapping[str, str] | None = None,
        images: bool = True,
        mistakes: OffOrPositiveInt = 16,
    ):
        check_arguments(TensorBoardLogger, {"every_steps": every_steps, "mistakes": mistakes})
        self.every_steps, self.images, self.mistakes = every_steps, images, mistakes
        self.split_names = dict(split_names or {"train": "train_eval", "validation": "eval", "test": "test"})
        self._writer: TensorBoardWriter | None = None
        # (step, time, trainer.seconds_outside_training) when the last training metrics were taken
        self._clock: tuple[int, float, float] = (0, 0.0, 0.0)
        self._taken: tuple[int, Mapping[str, jax.Array], float] | None = None  # not yet written
        self._figures = EvaluationFigures()

    def writer(self, trainer: Trainer) -> TensorBoardWriter | None:
        """Process 0's writer, opened on first use (a run that writes nothing
        leaves no event file); None in the other processes."""
        if self._writer is None and jax.process_index() == 0:
            self._writer = TensorBoardWriter(trainer.workdir)
        return self._writer

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        if int(state.step) == 0 and trainer.run_config is not None and (writer := self.writer(trainer)):
            self._write_run(writer, trainer.run_config, trainer.workdir, state)
        self._clock = (int(state.step), time.monotonic(), trainer.seconds_outside_training)

    @staticmethod
    def _write_run(writer: TensorBoardWriter, run_config: RunConfig, workdir: str, state: TrainState) -> None:
        """The run as the HParams tab's row named after its directory (the
        hyperparameters its command line chose), and in the Text tab: that
        command line, the resolved config and the parameter table."""
        writer.write_session(run_config.chosen_hparams(), trial_id=os.path.basename(os.path.normpath(workdir)))
        config = OmegaConf.to_yaml(dict(run_config.values))
        parameters = parameter_overview.get_parameter_overview(state.params, include_stats=False)
        writer.write_texts(
            0,
            {
                "run/overrides": f"`{run_config.name}`",
                "run/config": _code_block(config),
                "run/parameters": _code_block(parameters),
            },
        )

    def on_train_steps_end(self, trainer: Trainer, state: TrainState, step: int) -> None:
        if is_due(step, self.every_steps):
            self._take_train_metrics(trainer, step)

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        if int(state.step) > self._clock[0]:  # steps after the last full period
            self._take_train_metrics(trainer, int(state.step))
        self._flush(trainer)

    def _take_train_metrics(self, trainer: Trainer, step: int) -> None:
        """Takes this period's training metrics, still on their way from the
        device, and writes the previous period's, which have arrived: logging
        never makes the device wait."""
        metrics = trainer.take_train_metrics()
        last_step, last_time, last_outside = self._clock
        now, outside = time.monotonic(), trainer.seconds_outside_training
        steps_per_sec = (step - last_step) / max(now - last_time - (outside - last_outside), 1e-9)
        self._write_taken(trainer)
        self._taken = (step, metrics, steps_per_sec)
        self._clock = (step, now, outside)

    def _write_taken(self, trainer: Trainer) -> None:
        if self._taken is None:
            return
        step, metrics, steps_per_sec = self._taken
        self._taken = None
        scalars = {f"train/{name}": float(value) for name, value in metrics.items()}
        if writer := self.writer(trainer):
            writer.write_scalars(step, {**scalars, "train/steps_per_sec": steps_per_sec})

    def on_eval_end(self, trainer: Trainer, state: TrainState, step: int, split: str, results: EvalResults) -> None:
        self.write_results(trainer, step, split, results)

    def on_test_end(self, trainer: Trainer, state: TrainState, results: Mapping[str, EvalResults]) -> None:
        step = int(state.step)
        for split, split_results in results.items():
            self.write_results(trainer, step, split, split_results)
        gap = train_minus_validation_accuracy(results)
        if gap is not None and (writer := self.writer(trainer)):
            writer.write_scalars(step, {"gap/train_minus_validation_accuracy": gap})
        if self.images and self.mistakes and SplitName.test.value in results:
            self._write_mistakes(trainer, state)
        self._flush(trainer)

    def _write_mistakes(self, trainer: Trainer, state: TrainState) -> None:
        """The test images the model gets most confidently wrong (``<test>/mistakes``)."""
        split = SplitName.test.value
        log_probs, labels = trainer.predict(state, split)  # a collective with several processes: everyone calls
        probs = np.exp(log_probs)
        if (writer := self.writer(trainer)) is None:
            return
        shown = most_confident_mistakes(probs, labels, self.mistakes)
        images = trainer.data.eval_splits[split].read(shown)[0] if len(shown) else np.zeros((0, 1, 1, 1))
        name = self.split_names.get(split, split)
        title = f"{name}: the {len(shown)} most confident of {int((probs.argmax(-1) != labels).sum())} mistakes"
        grid = mistakes_grid(images, labels[shown], probs[shown], title=title)
        writer.write_images(int(state.step), {f"{name}/mistakes": grid[None]})

    def write_results(self, trainer: Trainer, step: int, split: str, results: EvalResults) -> None:
        """One evaluation under ``<name>/``: its scalars, the reliability
        diagram and the confusion matrix as images; each class's accuracy
        under ``<name>_by_class/`` (scalars up to ``LABELLED_CLASSES``
        classes, else a histogram)."""
        writer = self.writer(trainer)
        if writer is None:
            return
        name = self.split_names.get(split, split)
        scalars = {f"{name}/{metric}": value for metric, value in results.items() if metric != "num_examples"}
        accuracy = per_class_accuracy(results.confusion)
        if 0 < len(accuracy) <= LABELLED_CLASSES:
            scalars |= {f"{name}_by_class/accuracy_{label}": value for label, value in enumerate(accuracy)}
        elif len(accuracy):
            writer.write_histograms(step, {f"{name}_by_class/accuracy": accuracy[~np.isnan(accuracy)]})
        writer.write_scalars(step, scalars)
        if self.images:
            images = self._figures(name, step, results)
            writer.write_images(step, {tag: image[None] for tag, image in images.items()})

    def on_log_metrics(self, trainer: Trainer, step: int, metrics: Mapping[str, float]) -> None:
        if writer := self.writer(trainer):
            writer.write_scalars(step, metrics)
            writer.flush()

    def on_save_checkpoint(self, trainer: Trainer, step: int) -> None:
        self._flush(trainer)  # what a checkpoint covers is on disk before it

    def _flush(self, trainer: Trainer) -> None:
        self._write_taken(trainer)
        if self._writer is not None:
            self._writer.flush()

    def teardown(self, trainer: Trainer) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _code_block(text: str) -> str:
    """``text`` as Markdown preformatted text (TensorBoard's Text tab renders Markdown)."""
    return "\n".join("    " + line for line in text.splitlines())

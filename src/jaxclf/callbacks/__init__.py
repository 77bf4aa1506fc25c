"""The Trainer's callbacks, one per file: ``jaxclf.callbacks.ModelCheckpoint``
is what a config's ``_target_`` names, as ``lightning.pytorch.callbacks`` does.
``base`` holds the ``Callback`` class and its events."""

from jaxclf.callbacks.base import Callback
from jaxclf.callbacks.checkpoint import ModelCheckpoint
from jaxclf.callbacks.early_stopping import EarlyStopping
from jaxclf.callbacks.periodic_evaluation import PeriodicEvaluation
from jaxclf.callbacks.profiler import Profiler
from jaxclf.callbacks.progress_bar import ProgressBar
from jaxclf.callbacks.temperature_scaling import TemperatureScaling
from jaxclf.callbacks.tensorboard import TensorBoardLogger
from jaxclf.callbacks.time_budget import TimeBudget

__all__ = [
    "Callback",
    "EarlyStopping",
    "ModelCheckpoint",
    "PeriodicEvaluation",
    "Profiler",
    "ProgressBar",
    "TemperatureScaling",
    "TensorBoardLogger",
    "TimeBudget",
]

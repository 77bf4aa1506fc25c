"""Exceptions that end a run with one line on stderr instead of a traceback."""

import re


class ConfigError(ValueError):
    """A bad configuration value; its message is one line naming the key, the
    value, and what is valid. ``launch.py`` prints it and exits with code 2."""


def config_error(path: str, error: ValueError) -> ConfigError:
    """A ``ValueError`` raised while building the object at config ``path``, as
    one line naming the key: objects' own argument checks start their messages
    with the argument (``num_heads=3 does not ...`` -> ``model.num_heads=3 does not ...``)."""
    if isinstance(error, ConfigError):
        return error
    message = str(error).strip().splitlines()[0]
    return ConfigError(f"{path}.{message}" if re.match(r"\w+=", message) else f"{path}: {message}")


class ProcessesDisagree(ConfigError):
    """The processes of a multi-process run were given different configs;
    every process raises it, together."""


class RunStopped(RuntimeError):
    """Training stopped before ``max_steps`` with everything saved so far kept;
    ``launch.py`` prints the message and exits with ``exit_code``."""

    exit_code = 1


class Preempted(RunStopped):
    """SIGTERM or SIGINT: the current step finished and was checkpointed."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number  # the shell's code for death by that signal


class NonFiniteError(RunStopped):
    """A NaN or Inf in the loss or gradients with ``trainer.on_nonfinite=stop``."""

    exit_code = 3


class StorageError(RunStopped):
    """A checkpoint could not be written (disk full, permissions, a file in
    the way); every checkpoint committed before it is intact."""

    exit_code = 4

"""The ``jaxclf`` command, which ``python launch.py`` also runs:
``jaxclf [group=option ...] [key=value ...]``.

Hydra composes the package's ``conf/`` (validated against ``jaxclf.config.schema``);
the library does the rest. A bad value ends the run with one line on stderr
and exit code 2 (a traceback too with ``HYDRA_FULL_ERROR=1``); a run stopped
early (SIGTERM, SIGINT, a non-finite loss) with one line and its own exit
code. In a multirun, a job that fails writes ``failure.json`` and the sweep
goes on.
"""

import logging
import os
import signal
import sys
import threading
import time
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from jaxclf.config.schema import Mode  # (importing it registers the config schema with Hydra)
from jaxclf.config.validation import validate
from jaxclf.console import quiet_libraries
from jaxclf.errors import ConfigError, NonFiniteError, Preempted, ProcessesDisagree, RunStopped, StorageError

_USER_FULL_ERROR = "JAXCLF_USER_HYDRA_FULL_ERROR"  # HYDRA_FULL_ERROR as the user set it ("" if unset)


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def run_job(cfg: DictConfig) -> float | None:
    """One job: a run, or one of a multirun's."""
    quiet_libraries()
    hydra_config = HydraConfig.get()
    if not _full_error():
        _quiet_background_tracebacks()
    try:
        validate(cfg)  # before JAX is imported: a bad value is reported at once
        from jaxclf.modes import execute

        results = execute(cfg, hydra_config.runtime.output_dir, list(hydra_config.overrides.task))
    except Exception as error:
        expected = isinstance(error, (ConfigError, RunStopped))
        if expected:
            kind = "error" if isinstance(error, ConfigError) else "stopped"
            print(f"jaxclf: {kind}: {error}", file=sys.stderr)
        if hydra_config.mode == RunMode.MULTIRUN and not isinstance(error, Preempted):
            # Recorded in the job's directory; Hydra marks the job failed,
            # runs the rest of the sweep, then exits with code 1. (A signal
            # stops the whole sweep, below.)
            from jaxclf.run_dir import record_failure

            record_failure(hydra_config.runtime.output_dir, error)
            raise
        if not expected or _full_error():
            raise
        code = error.exit_code if isinstance(error, RunStopped) else 2
        if isinstance(error, StorageError) or (_joined_processes() and not _every_process_stops(error)):
            _exit_now(code)  # orbax's threads of a failed save wait 300 s for signals that never come
        sys.exit(code)
    if cfg.mode == Mode.describe:
        _remove_if_empty(hydra_config.runtime.output_dir)
    return results.get("validation", {}).get("accuracy")  # the objective Hydra sweepers optimise


def _remove_if_empty(directory: str) -> None:
    """Removes ``directory`` and its parents below the working directory while
    they are empty (the run directory Hydra made for a job that wrote nothing)."""
    path = os.path.abspath(directory)
    while True:
        try:
            os.rmdir(path)  # only ever an empty directory
        except OSError:
            return
        path = os.path.dirname(path)
        if not path.startswith(os.getcwd() + os.sep):
            return


def _quiet_background_tracebacks() -> None:
    """Background threads' tracebacks (orbax's and tensorstore's, when a save
    fails) at DEBUG only: the main thread reports the failure in one line."""

    def log_thread_error(args: threading.ExceptHookArgs) -> None:
        exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
        logging.getLogger("jaxclf").debug("thread %s failed", args.thread, exc_info=exc_info)  # type: ignore[arg-type]

    def without_traceback(record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        return True

    def is_echo(error: BaseException | None) -> bool:
        # What tensorstore's native callbacks raise after a failed save, on any
        # thread (the main one included: they run inline while it waits).
        return isinstance(error, RuntimeError) and str(error) == "Event loop is closed"

    def excepthook(*exc_info) -> None:
        if threading.current_thread() is threading.main_thread() and not is_echo(exc_info[1]):
            original_excepthook(*exc_info)
        else:
            logging.getLogger("jaxclf").debug("a background callback failed", exc_info=exc_info)

    def unraisablehook(unraisable: Any) -> None:
        if is_echo(unraisable.exc_value):
            logging.getLogger("jaxclf").debug("a native callback failed: %r", unraisable.exc_value)
        else:
            original_unraisablehook(unraisable)

    original_excepthook, original_unraisablehook = sys.excepthook, sys.unraisablehook
    threading.excepthook = log_thread_error
    sys.excepthook = excepthook
    sys.unraisablehook = unraisablehook
    logging.getLogger("absl").addFilter(without_traceback)


def _check_quoting(arguments: list[str]) -> None:
    """Hydra's override grammar takes non-ASCII characters only inside quotes:
    say how to write such a value instead of showing the lexer's error."""
    for argument in arguments:
        key, separator, value = argument.partition("=")
        quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
        if separator and not value.isascii() and not quoted:
            message = f"{argument}: quote a value with non-ASCII characters, as {key}='\"{value}\"'"
            print(f"jaxclf: error: {message}", file=sys.stderr)
            sys.exit(2)


def _one_line(error: CompactHydraException) -> str:
    """Hydra's multi-line report of a bad override or config group, as one line."""
    text = str(error).split("\nConfig search path:")[0]
    override = getattr(error, "override", None)  # the parser's errors do not quote it
    parts = [f"{override}:"] if override else []
    for line in filter(None, text.splitlines()):
        if line.startswith("    "):  # OmegaConf's details (full_key, object_type)
            continue
        if parts and (line.startswith("\t") or parts[-1].endswith(":")):  # a list's items, or what a colon leads to
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line.strip()
        else:
            parts.append(line)
    if isinstance(error.__cause__, OmegaConfBaseException):  # what was wrong, after what Hydra tried
        parts.insert(1, str(error.__cause__).splitlines()[0])
    return "; ".join(part.rstrip(".") for part in parts)


def main() -> None:
    """``jaxclf`` (and ``python launch.py``) with the command line's arguments."""
    _check_quoting(sys.argv[1:])
    # Hydra prints a bad override or config group, and a sweep's failed job,
    # in several lines; told to raise them instead (HYDRA_FULL_ERROR), it lets
    # one line be said here. The user's own setting is kept for the jobs.
    user_setting = os.environ.get("HYDRA_FULL_ERROR")
    os.environ[_USER_FULL_ERROR], os.environ["HYDRA_FULL_ERROR"] = user_setting or "", "1"
    try:
        run_job()
    except CompactHydraException as error:
        if _full_error():
            raise
        print(f"jaxclf: error: {_one_line(error)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C outside training (which saves and stops itself): building, testing, predicting
        if _full_error():
            raise
        print(
            "jaxclf: stopped: interrupted (SIGINT); every checkpoint committed so far is kept; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        if _joined_processes():
            _exit_now(128 + signal.SIGINT)
        sys.exit(128 + signal.SIGINT)
    except (ConfigError, RunStopped) as error:  # a sweep's job: reported by the job, recorded in failure.json
        if _full_error():
            raise
        print(
            f"jaxclf: a job of the sweep failed ({error}); each failed job's directory holds failure.json",
            file=sys.stderr,
        )
        sys.exit(1)
    finally:
        del os.environ[_USER_FULL_ERROR]
        if user_setting is None:
            del os.environ["HYDRA_FULL_ERROR"]
        else:
            os.environ["HYDRA_FULL_ERROR"] = user_setting


def _every_process_stops(error: Exception) -> bool:
    """Whether every process of the run raises ``error`` at the same point, so
    that they leave together through jax.distributed's shutdown barrier."""
    return isinstance(error, (ProcessesDisagree, Preempted, NonFiniteError))


def _exit_now(code: int) -> None:
    """Exits without the exit handlers: jax.distributed's shutdown barrier
    would wait for processes that go on (they notice this one's absence:
    jaxclf.peers). Process 0 serves the other processes' coordination: it
    leaves a moment later, so theirs do not find it gone mid-exit."""
    logging.shutdown()
    if _joined_processes() and sys.modules["jax"].process_index() == 0:
        time.sleep(1.0)
    os._exit(code)


def _joined_processes() -> bool:
    """Whether this process joined others through ``jax.distributed`` (JAX imported already)."""
    jax = sys.modules.get("jax")
    return jax is not None and jax.distributed.is_initialized()


def _full_error() -> bool:
    """Whether the user asked for tracebacks (``HYDRA_FULL_ERROR=1``)."""
    return os.environ.get(_USER_FULL_ERROR, os.environ.get("HYDRA_FULL_ERROR")) == "1"


if __name__ == "__main__":
    main()

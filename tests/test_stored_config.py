"""A run directory is data, never code: a stored config that names code is
refused in every mode that reads a run (evaluate, predict, a teacher), with
one line and exit code 2, no file written and no code run; trusting the run
(``evaluation.trust_run_config=true``) rebuilds a user's own model."""

from __future__ import annotations

import json
import pathlib
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import digest, launch_in_process, run_launch
from jaxclf.models.mlp import MLP

MARKER = "pwned"  # the file an attack writes, or that code it runs creates


class UserMLP(MLP):
    """A user's own model: the default MLP under a name outside jaxclf."""


class _TouchOnLoad:
    """Unpickling it creates ``path``: what a pickled payload in a run directory could do."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return pathlib.Path.touch, (self.path,)


def _pickle_payload(config: dict, run_dir: Path, marker: Path) -> None:
    np.save(run_dir / "payload.npy", np.array([_TouchOnLoad(marker)], dtype=object), allow_pickle=True)
    config["model"] = {
        "_target_": "numpy.load",
        "_args_": ["${evaluation.run_dir}/payload.npy"],
        "allow_pickle": True,
    }


def _write_text(config: dict, run_dir: Path, marker: Path) -> None:
    path = {"_target_": "pathlib.PosixPath", "_args_": [str(marker)]}
    config["model"] = {"_target_": "pathlib.Path.write_text", "_args_": [path, "x"]}


def _copyfile(config: dict, run_dir: Path, marker: Path) -> None:
    config["model"] = {"_target_": "shutil.copyfile", "src": str(run_dir / "summary.json"), "dst": str(marker)}


def _open_for_writing(config: dict, run_dir: Path, marker: Path) -> None:
    config["optim"] = {"_target_": "builtins.open", "file": str(marker), "mode": "w"}


def _builder_module(config: dict, run_dir: Path, marker: Path) -> None:
    module = run_dir.parent / "attacker_module.py"
    module.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    config["data"]["builder_module"] = "attacker_module"


def _nested_target(config: dict, run_dir: Path, marker: Path) -> None:
    config["model"]["num_classes"] = {"_target_": "builtins.open", "file": str(marker), "mode": "w"}


def _interpolation(config: dict, run_dir: Path, marker: Path) -> None:
    config["model"]["dtype"] = "${oc.env:HOME}"


def _hydra_key(key: str, value) -> Callable[[dict, Path, Path], None]:
    def attack(config: dict, run_dir: Path, marker: Path) -> None:
        config["model"][key] = value

    return attack


def _user_model(config: dict, run_dir: Path, marker: Path) -> None:
    config["model"]["_target_"] = f"{__name__}.UserMLP"


ATTACKS = {  # name: (how the stored config is edited, the refused key the line names)
    "numpy.load of a pickle": (_pickle_payload, "model._target_=numpy.load"),
    "Path.write_text": (_write_text, "model._target_=pathlib.Path.write_text"),
    "shutil.copyfile": (_copyfile, "model._target_=shutil.copyfile"),
    "builtins.open(path, 'w')": (_open_for_writing, "optim._target_=builtins.open"),
    "data.builder_module": (_builder_module, "data.builder_module=attacker_module"),
    "a nested _target_": (_nested_target, "model.num_classes._target_"),
    "an interpolation": (_interpolation, "model.dtype='${oc.env:HOME}'"),
    "_args_": (_hydra_key("_args_", [1]), "model._args_"),
    "_partial_": (_hydra_key("_partial_", True), "model._partial_"),
    "_recursive_": (_hydra_key("_recursive_", False), "model._recursive_"),
    "_convert_": (_hydra_key("_convert_", "all"), "model._convert_"),
    "a user's own model": (_user_model, f"model._target_={__name__}.UserMLP"),
}
# How each mode that reads a run is pointed at one.
MODES = {
    "evaluate": lambda run: ("mode=evaluate", f"evaluation.run_dir={run}"),
    "predict": lambda run: ("mode=predict", f"evaluation.run_dir={run}"),
    "teacher": lambda run: ("loss=distill", f"loss.teacher={run}", "trainer.max_steps=2", "callbacks=none"),
}


def _attacked_run(finished_run: Path, tmp_path: Path, attack) -> tuple[Path, Path]:
    """A copy of ``finished_run`` whose stored config ``attack`` edited, and the marker path."""
    run_dir, marker = tmp_path / "attacked" / "run", tmp_path / MARKER
    shutil.copytree(finished_run, run_dir)
    for meta in (run_dir / "checkpoints").glob("*/meta/metadata"):
        saved = json.loads(meta.read_text())
        attack(saved["config"], run_dir, marker)
        meta.write_text(json.dumps(saved))
    return run_dir, marker


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("attack", ATTACKS)
def test_a_stored_config_that_names_code_is_refused(finished_run, tmp_path, data_dir, monkeypatch, attack, mode):
    edit, key = ATTACKS[attack]
    run_dir, marker = _attacked_run(finished_run, tmp_path, edit)
    monkeypatch.syspath_prepend(str(run_dir.parent))  # the attacker's module is importable
    before = digest(run_dir)
    workdir = tmp_path / "reader"
    code, stderr = launch_in_process(f"hydra.run.dir={workdir}", f"data.data_dir={data_dir}", *MODES[mode](run_dir))
    assert code == 2
    (line,) = stderr.strip().splitlines()
    assert line.startswith(f"jaxclf: error: {run_dir}: its stored config's {key} "), line
    assert line.endswith("(if you trust this run's code, set evaluation.trust_run_config=true)"), line
    assert not marker.exists()  # no file written, no code run
    assert digest(run_dir) == before
    assert not (workdir / "predictions.csv").exists() and not (workdir / "evaluation.json").exists()


def test_a_refused_run_is_one_line_from_a_real_launch(finished_run, tmp_path, data_dir):
    run_dir, marker = _attacked_run(finished_run, tmp_path, _pickle_payload)
    result = run_launch(
        "mode=evaluate",
        f"evaluation.run_dir={run_dir}",
        f"hydra.run.dir={tmp_path / 'reader'}",
        f"data.data_dir={data_dir}",
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"jaxclf: error: {run_dir}: its stored config's model._target_=numpy.load is not one of jaxclf's models; "
        "a run directory is read as data, not code (if you trust this run's code, set evaluation.trust_run_config=true)"
    ]
    assert not marker.exists()


def test_a_trusted_run_rebuilds_its_own_model(finished_run, tmp_path, data_dir):
    run_dir, _ = _attacked_run(finished_run, tmp_path, _user_model)
    workdir = tmp_path / "reader"
    overrides = (
        f"hydra.run.dir={workdir}",
        f"data.data_dir={data_dir}",
        "mode=evaluate",
        f"evaluation.run_dir={run_dir}",
    )
    code, stderr = launch_in_process(*overrides, "evaluation.trust_run_config=true")
    assert code == 0, stderr
    evaluation = json.loads((workdir / "evaluation.json").read_text())
    assert evaluation["test"]["accuracy"] == json.loads((finished_run / "summary.json").read_text())["test"]["accuracy"]

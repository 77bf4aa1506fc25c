"""Hydra composes every option of every group, and the schema rejects bad keys and types."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from typing import Any

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from conftest import CONF_DIR, ROOT, run_launch

GROUPS = ("model", "loss", "data", "hardware", "optim", "trainer", "callbacks", "experiment")


def _options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_option_composes_and_resolves(compose, group, option):
    cfg = compose([f"{group}={option}"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices[group] == option
    job_config = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    container = OmegaConf.to_container(job_config, resolve=True, throw_on_missing=True)
    assert (
        group == "experiment" or container[group] or (group, option) == ("callbacks", "none")
    )  # interpolations resolve


def test_expected_options_exist():
    assert set(_options("model")) >= {"linear", "mlp"}
    assert set(_options("loss")) >= {"ce", "soft_ce", "bce", "distill"}
    assert set(_options("data")) >= {"digits", "digits_parity"}
    assert set(_options("hardware")) >= {"cpu", "gpu_single", "tpu_v4"}
    assert set(_options("optim")) >= {"adamw", "sgd"}


def test_defaults(compose):
    cfg = compose()
    assert cfg.model._target_ == "jaxclf.models.mlp.MLP"
    assert cfg.data.name == "digits/classes" and cfg.hardware.platform == "cpu"
    assert cfg.optim._target_ == "jaxclf.optim.adamw"
    assert cfg.model.num_classes == cfg.data.num_classes == 10
    assert cfg.optim.total_steps == cfg.trainer.max_steps
    assert str(cfg.mode.value) == "fit" and cfg.seed == 0
    for key in (
        "trainer.max_steps",
        "callbacks.evaluation.every_steps",
        "callbacks.checkpoint.every_steps",
        "callbacks.tensorboard.every_steps",
        "trainer.resume",
        "data.batch_size",
        "optim.learning_rate",
        "optim.weight_decay",
        "optim.warmup_steps",
    ):
        assert OmegaConf.select(cfg, key) is not None, key


def test_hardware_dtypes(compose):
    assert compose(["hardware=gpu_single"]).model.dtype == "bfloat16"
    assert compose(["hardware=tpu_v4"]).hardware.distributed is True
    assert compose(["hardware=cpu"]).model.dtype == "float32"


@pytest.mark.parametrize(
    "override",
    ["trainer.max_step=10", "optim.momentum=0.5", "data.batchsize=3", "model.hidden=3"],
)
def test_unknown_key_fails_at_compose_time(compose, override):
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        compose([override])


@pytest.mark.parametrize(
    "override",
    [
        "trainer.max_steps=ten",
        "data.batch_size=1.5",
        "optim.learning_rate=fast",
        "trainer.resume=maybe",
        "model.hidden_sizes=wide",
        "mode=train",
    ],
)
def test_wrong_type_fails_at_compose_time(compose, override):
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose([override])


def test_unknown_group_option_fails(compose):
    with pytest.raises(ConfigCompositionException, match="mlp"):
        compose(["model=transformer9000"])


@pytest.mark.parametrize("group", ["model", "loss", "optim", "data", "hardware", "trainer", "callbacks"])
def test_an_unknown_option_lists_exactly_the_yaml_files(compose, group):
    """The schemas the options extend are not options themselves."""
    with pytest.raises(ConfigCompositionException) as error:
        compose([f"{group}=no_such_option"])
    listing = str(error.value).split(f"Available options in '{group}':")[1].split("Config search path:")[0]
    listed = [line.strip() for line in listing.splitlines() if line.strip()]
    assert listed == _options(group)


def test_help_lists_real_options_and_says_what_every_group_does():
    result = run_launch("--help")
    assert result.returncode == 0, result.stderr
    groups = result.stdout.split("== Configuration groups ==")[1].split("== What each group does ==")[0]
    assert "model: cnn, linear, mlp, resnet18" in groups and "schema" not in groups and "base_" not in groups
    described = result.stdout.split("== What each group does ==")[1].split("== Config ==")[0]
    real_groups = sorted(
        path.name for path in CONF_DIR.iterdir() if path.is_dir() and path.name != "hydra" and path.name[0] != "_"
    )
    assert sorted(line.split()[0] for line in described.strip().splitlines()) == real_groups


@pytest.mark.parametrize(
    "override",
    [
        "model.pool=max",
        "model.posemb=rope",
        "hardware.platform=fpga",
        "hardware.compute_dtype=int8",
        "trainer.on_nonfinite=ignore",
        "evaluation.splits=[validation,holdout]",
    ],
)
def test_closed_choices_fail_at_compose_time(compose, override):
    with pytest.raises(ConfigCompositionException) as error:
        compose(["model=vit", override])
    assert "Invalid value" in str(error.value.__cause__) and "expected one of" in str(error.value.__cause__)


def test_resnet_choices_are_closed_too(compose):
    for override in ("model.stem=tiny", "model.block=wide"):
        with pytest.raises(ConfigCompositionException) as error:
            compose(["model=resnet18", override])
        assert "expected one of" in str(error.value.__cause__)


def test_binary_experiment_has_a_single_logit_head(compose):
    cfg = compose(["experiment=binary_digits"])
    assert cfg.model.num_classes == 1 and cfg.data.num_classes == 2
    assert cfg.loss.loss_fn._target_ == "jaxclf.losses.sigmoid_cross_entropy"


def test_loss_options(compose):
    assert compose(["loss=soft_ce"]).loss.label_smoothing == 0.1
    assert compose(["loss=ce"]).loss.label_smoothing == 0.0
    distill = compose(["loss=distill", "loss.teacher=/some/run", "loss.temperature=2"])
    assert distill.loss.temperature == 2.0 and distill.loss.alpha == 0.9 and distill.loss.teacher == "/some/run"


def test_the_docs_list_exactly_the_keys_a_resumed_run_may_change(compose):
    from jaxclf.config.schema import resumable_keys_of

    guide = (ROOT / "docs" / "guides" / "resuming.md").read_text()
    bullet = guide.split("**One config per run directory.**")[1].split("\n- **")[0]
    listed = re.findall(r"`([a-z_.]+)`", bullet.split("(a test holds this list to them):")[1])
    assert sorted(listed) == sorted(resumable_keys_of(compose())) == sorted(resumable_keys_of(compose(["optim=sgd"])))


def test_resumable_keys_come_from_the_schema_marks(compose):
    from jaxclf.config.schema import resumable_keys_of

    keys = resumable_keys_of(compose())
    assert {"trainer.max_steps", "optim.total_steps", "callbacks", "data.data_dir"} <= keys
    assert not {"optim.learning_rate", "model.hidden_sizes", "data.batch_size", "seed", "trainer.on_nonfinite"} & keys


def _schema_writer() -> Any:
    """``tools/write_schemas.py``, which is no part of the package."""
    spec = importlib.util.spec_from_file_location("write_schemas", ROOT / "tools" / "write_schemas.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_schemas_match_the_targets_signatures():
    # jaxclf/config/schemas.py is written from the signatures, so that composing imports no JAX;
    # a changed signature or range must be followed by `python tools/write_schemas.py`.
    writer = _schema_writer()
    assert writer.SCHEMAS_FILE.read_text() == writer.render(), "run: python tools/write_schemas.py"


def test_every_range_names_a_parameter_of_its_target():
    from jaxclf.config.schemas import RANGES, TARGETS

    assert set(RANGES) <= set(TARGETS)
    for target, ranges in RANGES.items():
        assert set(ranges) <= {field.name for field in dataclasses.fields(TARGETS[target])}, target

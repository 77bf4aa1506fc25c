"""Writes ``src/jaxclf/config/schemas.py``, the built-in options' schemas and
argument ranges, from their targets' signatures.

The schema of ``model=vit`` is ``ViT``'s own fields, types and defaults
(hydra-zen ``builds``); of ``optim=adamw``, ``optim.adamw``'s parameters;
an argument's range is the ``jaxclf.config.rules.Range`` on its type.
Building them imports Flax, optax and JAX (seconds), so they are generated
here once and kept as plain source: composing and validating a config then
imports none of them, and a bad value is reported at once. After changing a
signature, run::

    python tools/write_schemas.py

``tests/test_config.py`` fails while ``schemas.py`` differs from what this writes.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

from hydra.utils import get_object
from hydra_zen import builds
from omegaconf import MISSING

from jaxclf import losses, objectives, optim
from jaxclf.callbacks import (
    EarlyStopping,
    ModelCheckpoint,
    PeriodicEvaluation,
    Profiler,
    ProgressBar,
    TemperatureScaling,
    TensorBoardLogger,
)
from jaxclf.config.resumable import resumable
from jaxclf.config.rules import ranges_of
from jaxclf.models.cnn import CNN
from jaxclf.models.mlp import MLP, Linear
from jaxclf.models.resnet import ResNet
from jaxclf.models.vit import ViT

SCHEMAS_FILE = Path(__file__).parents[1] / "src" / "jaxclf" / "config" / "schemas.py"


def _model_schema(target: type) -> Any:
    return builds(
        target,
        populate_full_signature=True,
        zen_exclude=("parent", "name"),  # flax's own module fields
        num_classes="${data.num_classes}",
        dtype="${hardware.compute_dtype}",
    )


def _optim_schema(target: Any) -> Any:
    # The cosine decays to 0 at the run's end, which may move on resume.
    return builds(target, populate_full_signature=True, total_steps=resumable("${trainer.max_steps}"))


def built_schemas() -> dict[str, Any]:
    """Each schema's name in Hydra's ConfigStore -> the dataclass hydra-zen builds from its target."""
    return {
        "schema_linear": _model_schema(Linear),
        "schema_mlp": _model_schema(MLP),
        "schema_vit": _model_schema(ViT),
        "schema_resnet": _model_schema(ResNet),
        "schema_cnn": _model_schema(CNN),
        "schema_adamw": _optim_schema(optim.adamw),
        "schema_sgd": _optim_schema(optim.sgd),
        "schema_objective": builds(objectives.Objective, populate_full_signature=True, loss_fn=MISSING),
        "schema_distillation": builds(objectives.Distillation, populate_full_signature=True, loss_fn=MISSING),
    }


def target_schemas() -> list[Any]:
    """Schemas of the other built-in targets a config names (callbacks, loss
    functions), so that their keys are checked without importing them."""
    targets: list[Any] = [PeriodicEvaluation, ModelCheckpoint, EarlyStopping, ProgressBar, TensorBoardLogger, Profiler]
    targets += [TemperatureScaling]
    targets += [losses.softmax_cross_entropy, losses.sigmoid_cross_entropy, losses.focal_loss]
    return [builds(target, populate_full_signature=True) for target in targets]


Enums = set[tuple[str, str]]  # (module, name) of each Enum the source names


def _type_source(annotation: Any, enums: Enums) -> str:
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return "Any"
    if annotation is Ellipsis:
        return "..."
    if origin is typing.Union and len(arguments) == 2 and type(None) in arguments:
        (kept,) = [argument for argument in arguments if argument is not type(None)]
        return f"Optional[{_type_source(kept, enums)}]"
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_source(argument, enums) for argument in arguments)}]"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        enums.add((annotation.__module__, annotation.__name__))
    return annotation.__name__


def _literal(value: Any, enums: Enums) -> str:
    if isinstance(value, enum.Enum):
        enums.add((type(value).__module__, type(value).__name__))
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, str):
        return json.dumps(value)  # double quotes, as the formatter writes them
    if isinstance(value, tuple):
        items = [_literal(item, enums) for item in value]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    return repr(value)


def _default_source(field: dataclasses.Field, enums: Enums) -> str:
    if field.default_factory is not dataclasses.MISSING:
        raise TypeError(f"{field.name}: a default factory cannot be written as source")
    default = field.default
    source = "MISSING" if default is dataclasses.MISSING or default == MISSING else _literal(default, enums)
    return f"resumable({source})" if field.metadata.get("resumable") else source


def public_path(target: Any) -> str:
    """The dotted path a config names ``target`` by: its package's where the
    package re-exports it (``jaxclf.callbacks.ModelCheckpoint``), else its module's."""
    package = target.__module__.rsplit(".", 1)[0]
    exported = getattr(sys.modules.get(package), target.__name__, None) is target
    return f"{package if exported else target.__module__}.{target.__name__}"


def _class_source(schema: Any, enums: Enums) -> str:
    lines = ["@dataclasses.dataclass", f"class {schema.__name__}:"]
    for field in dataclasses.fields(schema):
        default = _default_source(field, enums)
        if field.name == "_target_":
            default = json.dumps(public_path(get_object(field.default)))
        lines.append(f"    {field.name}: {_type_source(field.type, enums)} = {default}")
    return "\n".join(lines)


def _ranges_source(schemas: list[Any]) -> tuple[str, set[str]]:
    """The ``RANGES`` table's entries and the ``Range`` constants they name."""
    lines, names = [], set()
    for schema in schemas:
        target = get_object(schema._target_)
        ranges = {argument: allowed.name for argument, allowed in ranges_of(target).items()}
        if ranges:
            entries = ", ".join(f'"{argument}": {name}' for argument, name in ranges.items())
            lines.append(f'    "{public_path(target)}": {{{entries}}},')
            names |= set(ranges.values())
    return "\n".join(lines), names


def _imports(enums: Enums, ranges: set[str]) -> str:
    owners = {module for module, _ in enums} | {"jaxclf.config.resumable", "jaxclf.config.rules"}
    names = {module: sorted(name for owner, name in enums if owner == module) for module in owners}
    names["jaxclf.config.resumable"] = ["resumable"]
    names["jaxclf.config.rules"] = [*sorted(ranges), "Range"]  # constants first, as isort orders them
    return "\n".join(f"from {module} import {', '.join(names[module])}" for module in sorted(owners))


def render() -> str:
    """The text of ``schemas.py``, as ``ruff format`` leaves it."""
    return subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(SCHEMAS_FILE), "-"],
        input=_source(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _source() -> str:
    enums: Enums = set()
    schemas = built_schemas()
    every = [*schemas.values(), *target_schemas()]
    classes = "\n\n\n".join(_class_source(schema, enums) for schema in every)
    table = "\n".join(f'    "{name}": {schema.__name__},' for name, schema in schemas.items())
    by_target = "\n".join(f'    "{public_path(get_object(schema._target_))}": {schema.__name__},' for schema in every)
    ranges, range_names = _ranges_source(every)
    return (
        '"""The built-in targets\' config schemas (models, optimizers, losses, callbacks)\n'
        "and their arguments' ranges, generated from their signatures by\n"
        "``python tools/write_schemas.py``: do not edit.\n\n"
        "Composing and validating a config with them imports neither JAX nor Flax.\n"
        '"""\n\n'
        "import dataclasses\n"
        "from typing import Any, Optional\n\n"
        "from omegaconf import MISSING\n\n"
        f"{_imports(enums, range_names)}\n\n\n"
        f"{classes}\n\n\n"
        "# The options' schemas, by their name in Hydra's ConfigStore.\n"
        f"SCHEMAS: dict[str, Any] = {{\n{table}\n}}\n\n"
        "# Every built-in target's schema, by its _target_.\n"
        f"TARGETS: dict[str, Any] = {{\n{by_target}\n}}\n\n"
        "# The ranges on the built-in targets' signatures, by _target_ and argument.\n"
        f"RANGES: dict[str, dict[str, Range]] = {{\n{ranges}\n}}\n"
    )


def main() -> None:
    SCHEMAS_FILE.write_text(render())
    print(f"wrote {SCHEMAS_FILE}", file=sys.stderr)


if __name__ == "__main__":
    main()

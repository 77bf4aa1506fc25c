"""Writes ``jaxclf/schemas.py``, the built-in options' schemas, from their targets' signatures.

The schema of ``model=vit`` is ``ViT``'s own fields, types and defaults
(hydra-zen ``builds``); of ``optim=adamw``, ``optim.adamw``'s parameters.
Building them imports Flax, optax and JAX (seconds), so they are generated
here once and kept as plain source: composing and validating a config then
imports none of them, and a bad value is reported at once. After changing a
signature, run::

    python -m jaxclf.schema_source

``tests/test_config.py`` fails while ``schemas.py`` differs from what this writes.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import typing
from pathlib import Path
from typing import Any

from hydra_zen import builds
from omegaconf import MISSING

from jaxclf import losses, objectives, optim
from jaxclf.callbacks import EarlyStopping, ModelCheckpoint, PeriodicEvaluation, ProgressBar
from jaxclf.models.cnn import CNN
from jaxclf.models.mlp import MLP, Linear
from jaxclf.models.resnet import ResNet
from jaxclf.models.vit import ViT
from jaxclf.profiling import Profiler
from jaxclf.resumable import resumable
from jaxclf.tensorboard_logger import TensorBoardLogger

SCHEMAS_FILE = Path(__file__).with_name("schemas.py")


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


def _class_source(schema: Any, enums: Enums) -> str:
    lines = ["@dataclasses.dataclass", f"class {schema.__name__}:"]
    for field in dataclasses.fields(schema):
        lines.append(f"    {field.name}: {_type_source(field.type, enums)} = {_default_source(field, enums)}")
    return "\n".join(lines)


def _imports(enums: Enums) -> str:
    modules = sorted({module for module, _ in enums} | {"jaxclf.resumable"})
    names = {module: sorted(name for owner, name in enums if owner == module) for module in modules}
    names["jaxclf.resumable"] = ["resumable"]
    return "\n".join(f"from {module} import {', '.join(names[module])}" for module in modules)


def render() -> str:
    """The text of ``schemas.py``."""
    enums: Enums = set()
    schemas = built_schemas()
    others = target_schemas()
    classes = "\n\n\n".join(_class_source(schema, enums) for schema in [*schemas.values(), *others])
    table = "\n".join(f'    "{name}": {schema.__name__},' for name, schema in schemas.items())
    by_target = "\n".join(f'    "{schema._target_}": {schema.__name__},' for schema in [*schemas.values(), *others])
    return (
        '"""The built-in targets\' config schemas (models, optimizers, losses, callbacks),\n'
        "generated from their signatures by ``python -m jaxclf.schema_source``: do not edit.\n\n"
        "Composing and validating a config with them imports neither JAX nor Flax.\n"
        '"""\n\n'
        "import dataclasses\n"
        "from typing import Any, Optional\n\n"
        "from omegaconf import MISSING\n\n"
        f"{_imports(enums)}\n\n\n"
        f"{classes}\n\n\n"
        "# The options' schemas, by their name in Hydra's ConfigStore.\n"
        f"SCHEMAS: dict[str, Any] = {{\n{table}\n}}\n\n"
        "# Every built-in target's schema, by its _target_.\n"
        f"TARGETS: dict[str, Any] = {{\n{by_target}\n}}\n"
    )


def main() -> None:
    SCHEMAS_FILE.write_text(render())
    print(f"wrote {SCHEMAS_FILE}", file=sys.stderr)


if __name__ == "__main__":
    main()

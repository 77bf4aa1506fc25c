"""House rules read from the code: layers without import cycles, short functions,
a Trainer constructor that takes its config rather than loose values."""

from __future__ import annotations

import ast
import graphlib
import inspect
from pathlib import Path

import pytest

from conftest import ROOT

SOURCE = ROOT / "src" / "jaxclf"
MAX_FUNCTION_LINES = 50


def _modules() -> dict[str, Path]:
    """``jaxclf.a.b`` -> its file, for every module of the package."""
    modules = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST) -> set[str]:
    """Every module a module imports at run time (``TYPE_CHECKING`` imports excluded),
    as dotted names (``from a import b`` gives ``a`` and ``a.b``)."""
    skipped = {id(child) for node in ast.walk(tree) if _is_type_checking_block(node) for child in ast.walk(node)}
    imported = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return imported


def import_graph() -> dict[str, set[str]]:
    """Each of the package's modules -> the package's modules it imports."""
    modules = _modules()
    return {name: _imports(ast.parse(path.read_text())) & modules.keys() - {name} for name, path in modules.items()}


def _libraries_reached(start: str) -> set[str]:
    """The top-level names of the libraries ``start`` imports, itself or through the package's modules."""
    modules, graph = _modules(), import_graph()
    reached, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo += graph[name]
    return {
        imported.split(".")[0]
        for name in reached
        for imported in _imports(ast.parse(modules[name].read_text()))
        if not imported.startswith("jaxclf")
    }


def _layer(*prefixes: str) -> set[str]:
    return {name for name in _modules() if any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)}


# The layers, lowest first. Core: what one training step computes. Storage:
# files of a run. Loop: the Trainer and its callbacks. Wiring: config to objects to modes.
CORE = ("jaxclf.train_state", "jaxclf.objectives", "jaxclf.losses", "jaxclf.metrics", "jaxclf.optim")
CORE += ("jaxclf.models", "jaxclf.evaluation", "jaxclf.temperature")
STORAGE = ("jaxclf.checkpointing", "jaxclf.run_dir", "jaxclf.run_lock")
LOOP = ("jaxclf.trainer", "jaxclf.callbacks", "jaxclf.steps_per_call")
WIRING = ("jaxclf.build", "jaxclf.modes", "jaxclf.describe", "jaxclf.restore", "jaxclf.cli", "jaxclf.studies")


def test_the_import_graph_is_read_from_the_code():
    graph = import_graph()
    assert "jaxclf.checkpointing" in graph["jaxclf.run_dir"] and "jaxclf.trainer" in graph["jaxclf.build"]
    assert "jaxclf.train_state" not in graph["jaxclf.checkpointing"]  # storage knows nothing of models
    assert "jax" in _libraries_reached("jaxclf.train_state") and "jax" not in _libraries_reached("jaxclf.errors")


def test_no_import_cycle_among_the_packages_modules():
    sorter = graphlib.TopologicalSorter(import_graph())
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")


@pytest.mark.parametrize(
    "layer, above",
    [(CORE, LOOP + WIRING + STORAGE), (STORAGE, CORE + LOOP + WIRING), (LOOP, WIRING)],
    ids=["core knows no loop, wiring or storage", "storage knows no core, loop or wiring", "loop knows no wiring"],
)
def test_a_layer_never_imports_a_higher_one(layer, above):
    graph = import_graph()
    reaching = {name: sorted(graph[name] & _layer(*above)) for name in _layer(*layer)}
    assert not {name: found for name, found in reaching.items() if found}


def test_the_config_never_imports_jax():
    # Composing and validating a config imports no JAX, Flax, optax or orbax, so a bad value is named at once.
    heavy = {"jax", "jaxlib", "flax", "optax", "orbax", "tensorflow", "tensorflow_datasets"}
    reached = {name: sorted(_libraries_reached(name) & heavy) for name in _layer("jaxclf.config")}
    assert not {name: found for name, found in reached.items() if found}


def test_only_the_command_and_studies_run_modes():
    graph = import_graph()
    assert {name for name in graph if "jaxclf.modes" in graph[name]} <= {"jaxclf.cli", "jaxclf.studies.study"}


def test_no_function_is_longer_than_50_lines():
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert not long


def test_the_trainer_constructor_takes_at_most_six_parameters():
    from jaxclf.trainer import Trainer

    parameters = list(inspect.signature(Trainer.__init__).parameters)[1:]
    assert len(parameters) <= 6, parameters
    assert parameters[:2] == ["config", "hardware"]  # the typed config, not one value per key

"""The package's structure: layers that only import downwards, no cycles, commands only in ``cli/``,
and a command line that starts without importing torch."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

SOURCE = REPO / "src" / "semcorr"

# Every module belongs to the first layer whose prefix it has; a module may import its own layer
# and the layers above it, never one below.
LAYERS = (
    "semcorr._moved",
    "semcorr._lazy",
    "semcorr.errors",
    "semcorr.extras",
    "semcorr.settings",
    "semcorr.fileio",
    "semcorr.lru",
    "semcorr.runtime",
    "semcorr.download",
    "semcorr.geometry",
    "semcorr.images",
    "semcorr.viz",
    "semcorr.weights",
    "semcorr.features.config",
    "semcorr.features.base",
    "semcorr.features.backbones",
    "semcorr.features.distill",
    "semcorr.features.released",
    "semcorr.features",
    "semcorr.matching",
    "semcorr.data",
    "semcorr.transfer",
    "semcorr.store",
    "semcorr.extract",
    "semcorr.threed",
    "semcorr.eval",
    "semcorr.train",
    "semcorr.video",
    "semcorr.segment",
    "semcorr.export",
    "semcorr.perf",
    "semcorr.reproduce",
    "semcorr.demo",
    "semcorr.app",
    "semcorr.labelstudio",
    "semcorr._legacy",
    "semcorr.cli",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imports(name: str) -> dict[str, set[str]]:
    """Every import of module ``name`` (top-level, in functions, under TYPE_CHECKING alike): the
    semcorr modules it names, and the other top-level packages."""
    tree = ast.parse(MODULES[name].read_text())
    found: dict[str, set[str]] = {"semcorr": set(), "other": set()}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found["semcorr" if alias.name.split(".")[0] == "semcorr" else "other"].add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name if is_package(name) else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != "semcorr":
                found["other"].add(target)
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found["semcorr"].add(submodule if submodule in MODULES else target)
    return found


GRAPH = {name: imports(name)["semcorr"] - {name} for name in MODULES}


def layer(name: str) -> int:
    return next(i for i, prefix in enumerate(LAYERS) if name == prefix or name.startswith(prefix + "."))


def test_every_module_has_a_layer():
    for name in MODULES:
        if name != "semcorr":
            layer(name)


def test_nothing_imports_the_cli():
    offenders = {
        name: sorted(t for t in targets if t.startswith("semcorr.cli"))
        for name, targets in GRAPH.items()
        if not name.startswith("semcorr.cli")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_argparse_only_in_the_cli():
    offenders = [
        name for name in MODULES if not name.startswith("semcorr.cli") and "argparse" in imports(name)["other"]
    ]
    assert not offenders


def test_imports_only_point_up_the_layers():
    upward = [
        (name, target)
        for name, targets in GRAPH.items()
        for target in targets
        if name != "semcorr" and target != "semcorr" and layer(target) > layer(name)
    ]
    assert not upward


def test_no_import_cycles():
    """Tarjan's strongly connected components: every one must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in GRAPH.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in MODULES:
        if name not in index:
            visit(name)
    assert not cycles


def test_lazy_names_never_shadow_a_submodule():
    """A package that exports a name equal to one of its submodules hands out the module once that
    submodule is imported (``from semcorr.train import distill`` must be the function)."""
    for name, path in MODULES.items():
        if not is_package(name):
            continue
        tree = ast.parse(path.read_text())
        exports = next(
            (
                node.value
                for node in tree.body
                if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets)
            ),
            None,
        )
        if exports is None:
            continue
        names = {key.value for key in exports.keys}
        submodules = {child.rpartition(".")[2] for child in MODULES if child.rpartition(".")[0] == name}
        assert not names & submodules, name


def test_a_small_top_level():
    top = [p.stem for p in SOURCE.glob("*.py") if p.stem not in ("__init__", "_lazy", "_moved")]
    assert len(top) <= 12, sorted(top)


STARTUP = """
import sys
from semcorr.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("torch imported:", "torch" in sys.modules)
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["match", "--help"],
        ["distill", "--help"],
        ["eval", "--help"],
        ["transfer", "--help"],
        ["warp", "--help"],
        ["extract", "--help"],
        ["cache-teacher", "--help"],
        ["data", "list"],
        ["data", "download", "--help"],
        ["match", "only-one-image.png"],
        ["bench", "--precision", "fp64"],
    ],
)
def test_help_and_argument_errors_import_no_torch(args):
    env = dict(os.environ, PYTHONPATH=str(SOURCE.parent))
    result = subprocess.run([sys.executable, "-c", STARTUP, *args], capture_output=True, text=True, env=env, timeout=60)
    assert result.stdout.strip().endswith("torch imported: False"), result.stdout + result.stderr


def test_importing_semcorr_imports_no_torch():
    env = dict(os.environ, PYTHONPATH=str(SOURCE.parent))
    code = "import sys, semcorr; semcorr.__version__; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def _public_definitions() -> dict[str, list[str]]:
    """Every public function and class defined at a module's top level (outside the CLI), by name."""
    found: dict[str, list[str]] = {}
    for name, path in MODULES.items():
        if name.startswith("semcorr.cli"):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                found.setdefault(node.name, []).append(name)
    return found


def test_no_two_public_names_collide():
    """One word for one thing: no two modules define a public function or class of the same name, and
    no two packages export the same name for different things."""
    clashes = {name: modules for name, modules in _public_definitions().items() if len(modules) > 1}
    assert not clashes
    exported: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        if not is_package(name):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets
            ):
                for key, value in zip(node.value.keys, node.value.values):
                    exported.setdefault(key.value, set()).add(f"{name}.{value.value}")
    mixed = {export: sorted(sources) for export, sources in exported.items() if len(sources) > 1}
    assert not mixed  # a name exported by two packages comes from the same module in both

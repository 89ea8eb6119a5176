"""The layer order of docs/architecture.md, enforced by walking every import (``ast``, lazy ones too).

core <- sequences, pipelines (never each other) <- server <- the command (the root package
``mrzero``: ``cli``, ``commands``, the client and the demos). A module may import its own
package and the layers below it, nothing above or beside it. Nothing anywhere (sources, tests,
benchmarks, tools) imports the repository folders by their folder names (``server``,
``pipelines``, ...): the installed distribution has one import root, ``mrzero``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {
    "core": "mrzero.core",
    "sequences": "mrzero.sequences",
    "pipelines": "mrzero.pipelines",
    "server": "mrzero.server",
    "mrzero": "mrzero",
}
# which packages each layer may import (besides the standard library and third-party packages)
ALLOWED = {
    "mrzero.core": {"mrzero.core"},
    "mrzero.sequences": {"mrzero.core", "mrzero.sequences"},
    "mrzero.pipelines": {"mrzero.core", "mrzero.pipelines"},
    "mrzero.server": {"mrzero.core", "mrzero.pipelines", "mrzero.server"},
    "mrzero": {"mrzero"},  # the command layer may import everything
}
LAYERS = ("mrzero.core", "mrzero.sequences", "mrzero.pipelines", "mrzero.server")


def _layer(module: str) -> str:
    for layer in LAYERS:
        if module == layer or module.startswith(layer + "."):
            return layer
    return "mrzero"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _sources() -> list[tuple[Path, str]]:
    out = []
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out.append((path, ".".join([package, *parts])))
    return out


def test_every_package_module_respects_the_layer_order():
    problems = []
    for path, module in _sources():
        layer = _layer(module)
        for line, imported in _imports(path):
            if not (imported == "mrzero" or imported.startswith("mrzero.")):
                continue
            target = _layer(imported)
            if layer != "mrzero" and target not in ALLOWED[layer]:
                problems.append(f"{path.relative_to(ROOT)}:{line}: {module} ({layer}) imports {imported}")
            if layer != "mrzero" and target == "mrzero":
                problems.append(
                    f"{path.relative_to(ROOT)}:{line}: {module} imports the command layer ({imported})"
                )
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "folder", ["core", "sequences", "pipelines", "server", "mrzero", "tests", "bench", "tools"]
)
def test_nothing_imports_a_folder_name_as_a_top_level_package(folder):
    bare = {"core", "sequences", "pipelines", "server"}
    problems = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, imported in _imports(path):
            if imported.split(".")[0] in bare:
                problems.append(f"{path.relative_to(ROOT)}:{line}: import {imported}")
    assert not problems, "use the mrzero.* import root:\n" + "\n".join(problems)


def test_every_package_folder_is_listed_in_pyproject():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {module for path, module in _sources() if path.name == "__init__.py"}
    assert found == listed, (
        f"missing from pyproject: {sorted(found - listed)}; stale: {sorted(listed - found)}"
    )

"""The package shows its layers: imports point down only, no module over 450 lines, no function over 60 lines.

Layers from the bottom: ``core`` ← ``defences`` ← ``training``, ``attacks`` (side by side: neither imports the other)
← ``studies`` ← ``book`` ← ``bench``. The old flat modules (``helpers/attack.py``, …) are shims, and package code
never imports through them or through the lazy names of ``helpers`` itself.
"""

import ast
from pathlib import Path

import pytest

HELPERS = Path(__file__).resolve().parent.parent / "src" / "helpers"
LEVEL = {"core": 0, "defences": 1, "training": 2, "attacks": 2, "studies": 3, "book": 4, "bench": 5}
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60  # statements, without the docstring

MODULES = sorted(p for p in HELPERS.rglob("*.py") if p.parent != HELPERS)


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, imported module) of every import, function-level ones included; ``from helpers import x`` counts as
    ``helpers.x``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "helpers":
                found += [(node.lineno, f"helpers.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name == "helpers" or name.startswith("helpers.")]


def upward_imports(source: str, *, layer: str, name: str) -> list[str]:
    """What module ``name`` of ``layer`` imports from its own level or above, or through the old paths."""
    wrong = []
    for line, imported in _imports(ast.parse(source)):
        parts = imported.split(".")
        target = parts[1] if len(parts) > 1 else None
        if target not in LEVEL:
            wrong.append(f"{name}:{line} imports {imported} (not a layer: an old path or a name of helpers itself)")
        elif target != layer and LEVEL[target] >= LEVEL[layer]:
            wrong.append(f"{name}:{line} imports {imported}: {layer} may only import the layers below it")
    return wrong


def test_every_layer_exists_and_only_shims_are_left_flat():
    assert sorted(p.name for p in HELPERS.iterdir() if p.is_dir() and (p / "__init__.py").exists()) == sorted(LEVEL)
    for path in HELPERS.glob("*.py"):
        if path.name in ("__init__.py", "_moved.py"):
            continue
        text = path.read_text()
        assert "moved(__name__, " in text and len(text.splitlines()) <= 6, f"{path.name} is not a shim"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(HELPERS).as_posix())
def test_imports_point_down_only(path):
    relative = path.relative_to(HELPERS)
    assert upward_imports(path.read_text(), layer=relative.parts[0], name=relative.as_posix()) == []


@pytest.mark.parametrize("source, layer", [
    ("def late():\n    from helpers.studies.results import SCORES\n", "core"),  # upward, inside a function
    ("from helpers.attacks import attack\n", "training"),  # sideways: training and attacks are one level
    ("from helpers.filters import Defence\n", "studies"),  # an old path
    ("from helpers import load_dataset\n", "book"),  # the lazy names are for users, not for the package
])
def test_the_check_catches_a_wrong_import(source, layer):
    assert len(upward_imports(source, layer=layer, name="probe.py")) == 1


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
        body = body[1:]
    return node.end_lineno - body[0].lineno + 1 if body else 0


def test_modules_and_functions_stay_small():
    too_long = []
    for path in MODULES:
        text = path.read_text()
        name = path.relative_to(HELPERS).as_posix()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(node) > MAX_FUNCTION_LINES:
                too_long.append(f"{name}:{node.lineno} {node.name}: {_body_lines(node)} lines")
    assert too_long == []

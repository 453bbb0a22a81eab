"""The README's module table lists exactly the package's modules, each under its subpackage."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_module_table_matches_the_package():
    text = (ROOT / "README.md").read_text()
    listed = re.findall(r"^\| `(\w+\.\w+)` \|", text, re.M)
    package = ROOT / "src" / "helpers"
    modules = sorted(f"{sub.name}.{path.stem}" for sub in package.iterdir() if (sub / "__init__.py").is_file()
                     for path in sub.glob("*.py") if path.stem != "__init__")
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert sorted(listed) == modules, (f"missing from the README: {sorted(set(modules) - set(listed))}; "
                                       f"listed but not in the package: {sorted(set(listed) - set(modules))}")


def test_readme_first_screen_names_the_commands_and_the_rerun():
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    for command in ("make book", "make lab", "make test"):
        assert command in first_screen, command

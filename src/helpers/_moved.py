"""The old flat module paths (``helpers.attacks.attack``, ``helpers.defences.filters``, …) keep working for one release.

Each old module is a two-line shim calling :func:`moved`: it warns once, naming the new path, and puts the new module
in its place in ``sys.modules``, so that the old name *is* the new module (its private names, its classes, and any
attribute a test patches on it).
"""

from __future__ import annotations

import importlib
import sys
import warnings


def moved(old: str, new: str) -> None:
    """Replace module ``old`` (being imported) by ``new``, with a ``DeprecationWarning`` naming ``new``."""
    warnings.warn(f"{old} is deprecated and will be removed in the next release; import {new}", DeprecationWarning,
                  stacklevel=3)
    sys.modules[old] = importlib.import_module(new)

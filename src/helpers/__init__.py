"""The reproduction book's package, in layers (each imports only the ones above it in this list):

``core`` ← ``defences`` ← ``training``, ``attacks`` ← ``studies`` ← ``book`` ← ``bench``.

What a user calls most is importable from here (loaded on first use, so ``import helpers`` stays cheap)::

    from helpers import load_dataset, train_model, targeted_attack, attack_evaluation
"""

from __future__ import annotations

import importlib
from typing import Any

# name → the module that defines it
_PUBLIC = {
    "load_dataset": "helpers.training.data",
    "build_model": "helpers.training.models",
    "train_model": "helpers.training.train",
    "fit_cached": "helpers.training.train",
    "Defence": "helpers.defences.filters",
    "register_filter_kind": "helpers.defences.filters",
    "predict_logits": "helpers.core.engine",
    "targeted_attack": "helpers.attacks.attack",
    "bpda_model": "helpers.attacks.adaptive",
    "pgd_l2": "helpers.attacks.adaptive",
    "apgd_l2": "helpers.attacks.apgd",
    "square_l2": "helpers.attacks.square",
    "ddn_l2": "helpers.attacks.minnorm",
    "AttackSpec": "helpers.attacks.registry",
    "ATTACKS": "helpers.attacks.registry",
    "register_attack": "helpers.attacks.registry",
    "attack_evaluation": "helpers.studies.evaluate",
    "clean_accuracy": "helpers.studies.evaluate",
    "paper_score": "helpers.studies.evaluate",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))

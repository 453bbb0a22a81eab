"""Notebook plumbing: validate the papermill parameters before any heavy work, and show the run settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from helpers.data import KNOWN_DATASETS
from helpers.filters import parse_defence
from helpers.models import ARCHITECTURES, MIN_IMAGE_SIZE
from helpers.profiles import PROFILES
from helpers.validate import check_choice, check_float, check_int

_SHOWN = ("profile", "study_dataset", "study_arch", "epochs", "sigmas", "windows", "train_seeds", "n_attack", "step", "max_steps", "arch_list",
          "budgets", "pgd_steps", "n_adaptive")


def _check_dataset(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a data set name, one of {', '.join(KNOWN_DATASETS)}; got {type(value).__name__}")
    if value not in ("mnist", "shapes", "digits") and not value.startswith("folder:"):
        raise ValueError(f"{name}: unknown data set {value!r}; known: {', '.join(KNOWN_DATASETS)}")


def _check_list(name: str, value: Any, item_check) -> None:
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(f"{name}: expected a non-empty list, got {value!r}")
    for item in value:
        item_check(item)


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected true or false, got {value!r}")


def check_parameters(params: Mapping[str, Any]) -> None:
    """Validate every known notebook parameter present in ``params`` (a notebook's ``globals()``)."""
    checks = {
        "profile": lambda v: check_choice("profile", v, PROFILES),
        "seed": lambda v: check_int("seed", v, minimum=0),
        "study_dataset": lambda v: _check_dataset("study_dataset", v),
        "arch_dataset": lambda v: _check_dataset("arch_dataset", v),
        "study_image_size": lambda v: v is None or check_int("study_image_size", v, minimum=8),
        "study_n_images": lambda v: v is None or check_int("study_n_images", v, minimum=10),
        "arch_n_images": lambda v: v is None or check_int("arch_n_images", v, minimum=10),
        "study_arch": lambda v: check_choice("study_arch", v, ARCHITECTURES),
        "epochs": lambda v: check_int("epochs", v, minimum=1),
        "arch_epochs": lambda v: check_int("arch_epochs", v, minimum=1),
        "batch_size": lambda v: check_int("batch_size", v, minimum=1),
        "arch_batch_size": lambda v: check_int("arch_batch_size", v, minimum=1),
        "step": lambda v: check_float("step", v, minimum=0.0, strict_minimum=True),
        "max_steps": lambda v: check_int("max_steps", v, minimum=1),
        "arch_max_steps": lambda v: check_int("arch_max_steps", v, minimum=1),
        "n_attack": lambda v: check_int("n_attack", v, minimum=1),
        "arch_n_attack": lambda v: check_int("arch_n_attack", v, minimum=1),
        "n_adaptive": lambda v: check_int("n_adaptive", v, minimum=1),
        "n_bootstrap": lambda v: check_int("n_bootstrap", v, minimum=10),
        "pgd_steps": lambda v: check_int("pgd_steps", v, minimum=1),
        "bench_images": lambda v: check_int("bench_images", v, minimum=2),
        "bench_seed_images": lambda v: check_int("bench_seed_images", v, minimum=1),
        "bench_repeats": lambda v: check_int("bench_repeats", v, minimum=1),
        "bench_batch_sizes": lambda v: _check_list("bench_batch_sizes", v, lambda b: check_int("bench_batch_sizes", b, minimum=1)),
        "bench_inception_size": lambda v: check_int("bench_inception_size", v, minimum=MIN_IMAGE_SIZE["inception_v3"]),
        "bench_inception_batch": lambda v: check_int("bench_inception_batch", v, minimum=1),
        "bench_train_batches": lambda v: check_int("bench_train_batches", v, minimum=1),
        "bench_compare_backends": lambda v: _check_bool("bench_compare_backends", v),
        "sigmas": lambda v: _check_list("sigmas", v, lambda s: check_float("sigmas", s, minimum=0.0, maximum=64.0)),
        "windows": lambda v: _check_list("windows", v, lambda s: parse_defence(f"median:{check_int('windows', s, minimum=1)}")),
        "train_seeds": lambda v: _check_list("train_seeds", v, lambda s: check_int("train_seeds", s, minimum=0)),
        "budgets": lambda v: _check_list("budgets", v, lambda s: check_float("budgets", s, minimum=0.0)),
        "arch_list": lambda v: _check_list("arch_list", v, lambda a: check_choice("arch_list", a, ARCHITECTURES)),
    }
    for name, check in checks.items():
        if name in params:
            check(params[name])
    if "arch_image_sizes" in params:
        sizes = params["arch_image_sizes"]
        if not isinstance(sizes, Mapping):
            raise TypeError(f"arch_image_sizes: expected a mapping from architecture to size, got {sizes!r}")
        for arch in params.get("arch_list", sizes):
            if arch not in sizes:
                raise ValueError(f"arch_image_sizes: no image size given for {arch}")
            size = check_int("arch_image_sizes", sizes[arch], minimum=8)
            if size < MIN_IMAGE_SIZE[arch]:
                raise ValueError(f"arch_image_sizes: {arch} needs at least {MIN_IMAGE_SIZE[arch]} px, got {size}")


def run_settings(params: Mapping[str, Any]) -> None:
    """Show the settings of this run as one Markdown line."""
    from IPython.display import Markdown, display

    shown = [f"`{k}` = {params[k]!r}" for k in _SHOWN if k in params]
    display(Markdown("**Run settings:** " + ", ".join(shown)))


def glue(name: str, value: Any) -> None:
    """myst-nb ``glue`` of a value for the prose, as a plain Python scalar (NumPy scalars do not format)."""
    from myst_nb import glue as _glue

    if hasattr(value, "item"):
        value = value.item()
    _glue(name, value, display=False)

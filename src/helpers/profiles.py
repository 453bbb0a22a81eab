"""Run profiles: the parameter sets that papermill injects into the notebooks.

Each notebook declares the parameters it uses in its ``parameters`` cell (with the ``default`` profile's
values); the book runner injects the matching subset of the chosen profile. Override any of them for one
run with papermill's ``-p NAME VALUE``.
"""

from __future__ import annotations

from helpers.validate import check_choice

NOTEBOOKS = (
    "01_attack",
    "02_gaussian",
    "03_median",
    "04_training",
    "05_results",
    "06_adaptive",
    "07_performance",
    "08_conclusion",
    "09_reproducibility",
)

_DEFAULT = {
    "profile": "default",
    "seed": 0,
    # The defence study (paper section 3): one architecture, one data set, a grid of filters.
    "study_dataset": "mnist",
    "study_image_size": None,
    "study_n_images": None,
    "study_arch": "small_cnn",
    "epochs": 5,
    "batch_size": 64,
    "sigmas": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0],
    "windows": [3, 5, 7],
    "train_seeds": [0, 1, 2],
    # The attack (paper section 2).
    "step": 0.1,
    "max_steps": 1000,
    "n_attack": 500,
    # The paper's three architectures, trained from scratch on MNIST digits upsampled to their input sizes
    # (on generated shapes they stayed at chance within a CPU budget; "shapes" remains a choice).
    "arch_dataset": "mnist",
    "arch_list": ["inception_v3", "vgg16", "resnet50"],
    "arch_image_sizes": {"inception_v3": 75, "vgg16": 32, "resnet50": 32},
    "arch_n_images": 1200,
    "arch_epochs": 2,
    "arch_batch_size": 32,
    "arch_weights": None,
    "arch_n_attack": 50,
    "arch_max_steps": 150,
    # Beyond the paper: adaptive attacks and robustness curves.
    "budgets": [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0],
    "pgd_steps": 20,
    "n_adaptive": 200,
    "n_bootstrap": 1000,
    # Performance (chapter 07): how much each speed measurement runs; medians over bench_repeats rounds.
    "bench_images": 96,
    "bench_seed_images": 32,
    "bench_repeats": 3,
    "bench_batch_sizes": [4, 16, 64, 256],
    "bench_inception_size": 75,
    "bench_inception_batch": 32,
    "bench_train_batches": 10,
    "bench_compare_backends": True,
}

PROFILES: dict[str, dict] = {
    "default": _DEFAULT,
    "quick": _DEFAULT
    | {
        "profile": "quick",
        "study_n_images": 1500,
        "epochs": 2,
        "sigmas": [0.0, 1.5, 3.0],
        "windows": [3],
        "train_seeds": [0],
        "max_steps": 300,
        "n_attack": 40,
        "arch_list": ["vgg16"],
        "arch_n_images": 150,
        "arch_epochs": 1,
        "arch_n_attack": 4,
        "arch_max_steps": 50,
        "budgets": [0.0, 1.0, 2.0, 4.0],
        "pgd_steps": 10,
        "n_adaptive": 30,
        "n_bootstrap": 200,
        "bench_images": 12,
        "bench_seed_images": 3,
        "bench_repeats": 1,
        "bench_batch_sizes": [16, 64],
        "bench_inception_batch": 4,
        "bench_train_batches": 3,
        "bench_compare_backends": False,
    },
    # For a GPU and an ImageNet-style folder (make book PROFILE=paper DATA=/path/to/folder).
    "paper": _DEFAULT
    | {
        "profile": "paper",
        "study_dataset": "folder:DATA",
        "study_image_size": 299,
        "study_arch": "inception_v3",
        "epochs": 10,
        "sigmas": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0],
        "windows": [3, 5, 7],
        "train_seeds": [0],
        "n_attack": 500,
        "arch_dataset": "folder:DATA",
        "arch_image_sizes": {"inception_v3": 299, "vgg16": 224, "resnet50": 224},
        "arch_n_images": None,
        "arch_epochs": 2,
        "arch_batch_size": 64,
        "arch_weights": "imagenet",
        "arch_n_attack": 100,
        "arch_max_steps": 1000,
    },
}


def profile_parameters(profile: str, *, data_dir: str | None = None) -> dict:
    """The full parameter set of a profile (``paper`` needs ``data_dir``, the ImageNet-style folder)."""
    check_choice("profile", profile, PROFILES)
    params = dict(PROFILES[profile])
    if profile == "paper":
        if not data_dir:
            raise ValueError("data_dir: the paper profile needs an ImageNet-style folder (make book PROFILE=paper DATA=PATH)")
        params["study_dataset"] = params["arch_dataset"] = f"folder:{data_dir}"
    return params

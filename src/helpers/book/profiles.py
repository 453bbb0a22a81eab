"""Every notebook parameter, declared once: its check and its value in each run profile.

:data:`PARAMETERS` is the one table. The profiles that papermill injects (:data:`PROFILES`), the checks a
notebook runs in its first code cell (:func:`helpers.book.notebook.check_parameters`) and the notebooks' own
``parameters`` cells (:func:`parameters_cell`, kept in step by ``scripts/run_book.py --sync-parameters`` and
checked by a test) all derive from it. Override any parameter for one run with papermill's ``-p NAME VALUE``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from helpers.core.validate import check_choice, check_float, check_int

NOTEBOOKS = (
    "01_attack",
    "02_gaussian",
    "03_median",
    "04_training",
    "05_results",
    "06_adaptive",
    "07_trusted",
    "07_comparison",
    "08_performance",
    "09_conclusion",
    "10_reproducibility",
)
# What each notebook needs from the ones before it: the results files it reads, and the models it finds in the
# model cache (chapter 5 attacks the models chapter 4 trained; chapter 8 shows every earlier chapter's run time).
# The book runner starts a notebook once these have run, two at a time where this allows it, and re-executes it
# when one of them changed.
NEEDS: dict[str, tuple[str, ...]] = {
    "01_attack": (),
    "02_gaussian": ("01_attack",),
    "03_median": ("01_attack", "02_gaussian"),  # its transfer table sets the Gaussian's beside the median's
    "04_training": (),
    "05_results": ("04_training",),
    "06_adaptive": ("01_attack", "04_training"),  # chapter 4's validation choices name the filters it attacks
    "07_trusted": (),
    "07_comparison": ("05_results", "06_adaptive", "07_trusted"),
    "08_performance": NOTEBOOKS[:8],
    "09_conclusion": ("01_attack", "05_results", "06_adaptive", "07_comparison"),
    "10_reproducibility": NOTEBOOKS[:10],
}
# Notebooks that report how long things take run alone, so that no other notebook slows what they time. (The
# first page of chapter 7 reports costs too, as CPU seconds, which a second notebook on the cores changes far less.)
RUNS_ALONE = ("08_performance",)
# When more than one notebook may start, these start before the others (then book order). Chapter 6 is the longest
# chapter and the comparison page waits on it; started after chapter 5, as book order would, it ran alone for ten
# minutes at the end of a default build while nothing else could run beside it.
STARTS_FIRST = ("06_adaptive",)
PROFILE_NAMES = ("quick", "default", "paper")
_SAME = object()


@dataclass(frozen=True)
class Parameter:
    """One notebook parameter: its check (raises a one-line error naming it) and its value per profile."""

    name: str
    check: Callable[[Any], Any]
    default: Any
    quick: Any = _SAME
    paper: Any = _SAME
    shown: bool = False  # listed in each chapter's "run settings" line

    def value(self, profile: str) -> Any:
        value = getattr(self, profile) if profile != "default" else self.default
        return self.default if value is _SAME else value


# ---------------------------------------------------------------------------------------------- checks


def _dataset(name: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        from helpers.training.data import KNOWN_DATASETS

        if not isinstance(value, str):
            raise TypeError(f"{name}: expected a data set name, one of {', '.join(KNOWN_DATASETS)}; got {type(value).__name__}")
        if value not in ("mnist", "shapes", "digits") and not value.startswith("folder:"):
            raise ValueError(f"{name}: unknown data set {value!r}; known: {', '.join(KNOWN_DATASETS)}")

    return check


def _integer(name: str, *, minimum: int | None = None, optional: bool = False) -> Callable[[Any], Any]:
    return lambda v: None if optional and v is None else check_int(name, v, minimum=minimum)


def _list(name: str, item: Callable[[Any], Any]) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not isinstance(value, (list, tuple)) or not value:
            raise TypeError(f"{name}: expected a non-empty list, got {value!r}")
        for element in value:
            item(element)

    return check


def _boolean(name: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"{name}: expected true or false, got {value!r}")

    return check


def _architecture(name: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        from helpers.training.models import ARCHITECTURES

        return check_choice(name, value, ARCHITECTURES)

    return check


def _window(value: Any) -> None:
    from helpers.defences.filters import Defence

    try:
        Defence.of("median", check_int("windows", value, minimum=1))
    except ValueError as error:
        raise ValueError(f"windows: {str(error).removeprefix('defence: ')}") from None


def _inception_size(value: Any) -> None:
    from helpers.training.models import MIN_IMAGE_SIZE

    check_int("bench_inception_size", value, minimum=MIN_IMAGE_SIZE["inception_v3"])


def _image_sizes(value: Any) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"arch_image_sizes: expected a mapping from architecture to size, got {value!r}")


def _weights(value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"arch_weights: expected null, \"imagenet\" or a file path, got {value!r}")


# ---------------------------------------------------------------------------------------------- the table

P = Parameter
PARAMETERS: tuple[Parameter, ...] = (
    P("profile", lambda v: check_choice("profile", v, PROFILE_NAMES), "default", "quick", "paper", shown=True),
    P("seed", _integer("seed", minimum=0), 0),
    # The defence study (paper section 3): one architecture, one data set, a grid of filters.
    P("study_dataset", _dataset("study_dataset"), "mnist", paper="folder:DATA", shown=True),
    P("study_image_size", _integer("study_image_size", minimum=8, optional=True), None, paper=299),
    P("study_n_images", _integer("study_n_images", minimum=10, optional=True), None, quick=1500),
    P("study_arch", _architecture("study_arch"), "small_cnn", paper="inception_v3", shown=True),
    # Share of the training images held out for validation: learning curves and every choice (best σ, best
    # window) use them, so that the test images judge only.
    P("validation_fraction", lambda v: check_float("validation_fraction", v, minimum=0.0, maximum=0.5), 0.2, shown=True),
    P("epochs", _integer("epochs", minimum=1), 5, quick=2, paper=10, shown=True),
    P("batch_size", _integer("batch_size", minimum=1), 64),
    P("sigmas", _list("sigmas", lambda s: check_float("sigmas", s, minimum=0.0, maximum=64.0)),
      [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0], quick=[0.0, 1.5, 3.0], shown=True),
    P("windows", _list("windows", _window), [3, 5, 7], quick=[3], shown=True),
    P("train_seeds", _list("train_seeds", lambda s: check_int("train_seeds", s, minimum=0)), [0, 1, 2], quick=[0], paper=[0],
      shown=True),
    # Chapter 6's training seeds: C6 is decided over every one of them (its design, at the top of the chapter, says
    # what this many detect); chapters 7's comparisons read the first of them that train_seeds names.
    P("adaptive_seeds", _list("adaptive_seeds", lambda s: check_int("adaptive_seeds", s, minimum=0)), [0, 1, 2, 3, 4], quick=[0],
      paper=[0], shown=True),
    # The attack (paper section 2).
    P("step", lambda v: check_float("step", v, minimum=0.0, strict_minimum=True), 0.1, shown=True),
    P("max_steps", _integer("max_steps", minimum=1), 1000, quick=300, shown=True),
    P("n_attack", _integer("n_attack", minimum=1), 500, quick=40, shown=True),
    # The score study (chapter 5): every seed's model attacked on the same test images, three attacks each.
    P("n_scored", _integer("n_scored", minimum=2), 100, quick=40, shown=True),
    P("n_validation", _integer("n_validation", minimum=2), 100, quick=40),
    P("minnorm_steps", _integer("minnorm_steps", minimum=1), 100, quick=50, shown=True),
    # The same Gaussian study on digits upsampled resolution_factor times (σ in the upsampled image's pixels).
    # 2, not 4: the attack's cost grows with the cube of the factor (pixels x steps, since ‖δ‖₂ grows with the side);
    # at 4 this side study took 154 s of a 30-minute book, at 2 it takes about 25 s for the same relative σ grid.
    P("resolution_factor", _integer("resolution_factor", minimum=1), 2, paper=1),  # 1: skipped
    P("resolution_sigmas", _list("resolution_sigmas", lambda s: check_float("resolution_sigmas", s, minimum=0.0, maximum=64.0)),
      [0.0, 1.0, 2.0, 3.0], quick=[0.0, 3.0]),
    P("resolution_n_images", _integer("resolution_n_images", minimum=10), 1000, quick=300),
    P("resolution_epochs", _integer("resolution_epochs", minimum=1), 2, quick=1),
    P("resolution_n_attack", _integer("resolution_n_attack", minimum=1), 60, quick=10),
    # The paper's three architectures, trained from scratch on MNIST digits upsampled to their input sizes
    # (on generated shapes they stayed at chance within a CPU budget; "shapes" remains a choice).
    P("arch_dataset", _dataset("arch_dataset"), "mnist", paper="folder:DATA"),
    P("arch_list", _list("arch_list", _architecture("arch_list")), ["inception_v3", "vgg16", "resnet50"], quick=["vgg16"],
      shown=True),
    # RMS per pixel is only comparable at equal sizes (C2). The paper profile gives all three 299 px; on 2 CPU cores
    # VGG16 at InceptionV3's minimum of 75 px took 351 s to train and over 5 min to attack, so the CPU profiles keep
    # VGG16 and ResNet50 at 32 px and C2 says "inconclusive" there.
    P("arch_image_sizes", _image_sizes, {"inception_v3": 75, "vgg16": 32, "resnet50": 32},
      paper={"inception_v3": 299, "vgg16": 299, "resnet50": 299}),
    P("arch_n_images", _integer("arch_n_images", minimum=10, optional=True), 1200, quick=150, paper=None),
    P("arch_epochs", _integer("arch_epochs", minimum=1), 2, quick=1),
    P("arch_batch_size", _integer("arch_batch_size", minimum=1), 32, paper=64),
    P("arch_weights", _weights, None, paper="imagenet"),
    P("arch_n_attack", _integer("arch_n_attack", minimum=1), 50, quick=4, paper=100),
    P("arch_max_steps", _integer("arch_max_steps", minimum=1), 150, quick=50, paper=1000),
    # Beyond the paper: adaptive attacks and robustness curves.
    P("budgets", _list("budgets", lambda s: check_float("budgets", s, minimum=0.0)),
      [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], quick=[0.0, 1.0, 2.0, 4.0], shown=True),
    P("pgd_steps", _integer("pgd_steps", minimum=1), 20, quick=10, shown=True),
    P("n_adaptive", _integer("n_adaptive", minimum=1), 150, quick=30, shown=True),
    # Resamples of every bootstrap: enough that a verdict does not hang on the bootstrap's own randomness (chapter 9).
    P("n_bootstrap", _integer("n_bootstrap", minimum=10), 10000, quick=2000),
    # The strong evaluation behind C6: APGD (both losses, exact and BPDA, restarts), APGD-T and Square on every digit of
    # chapter 6; chapter 7 attacks its trusted defences on the first strong_images of them.
    P("strong_images", _integer("strong_images", minimum=2), 50, quick=12, shown=True),
    P("strong_budgets", _list("strong_budgets", lambda s: check_float("strong_budgets", s, minimum=0.0, strict_minimum=True)),
      [1.0, 2.0], shown=True),
    # 50 steps and 1 start: in the build before the cascade, 100 steps and 5 starts lowered the worst case of every
    # model by at most 1.3 points more (2 of 150 digits), at about ten times the cost; chapter 6's check with twice
    # the steps and starts says, for every build, what more effort would still find.
    P("strong_steps", _integer("strong_steps", minimum=1), 50, quick=20, shown=True),
    P("strong_restarts", _integer("strong_restarts", minimum=1), 1, quick=1, shown=True),
    P("square_queries", _integer("square_queries", minimum=1), 1000, quick=100, shown=True),
    P("square_restarts", _integer("square_restarts", minimum=1), 1, shown=True),
    # Chapter 6's gradient-free checks, on the first seed: Square with this many queries alone on every digit of the
    # undefended model (its reach), and on every one of the first strong_images digits the cascade left on each defended
    # model. With the cascade's 1 000 queries Square stayed 23 points above the gradient attacks on the undefended model.
    P("square_check_queries", _integer("square_check_queries", minimum=1), 5000, quick=100, shown=True),
    # Chapter 6's attacks run as one job per model and seed in this many processes, each on one TensorFlow thread
    # (helpers.studies.workers): in one process they kept 1.1 to 1.5 of this machine's 2 cores busy. Set it to your
    # number of cores; what the attacks find does not depend on it (tests/test_workers.py). The paper profile's GPU takes one process.
    P("attack_processes", _integer("attack_processes", minimum=1), 2, paper=1),
    P("transfer_margin", lambda v: check_float("transfer_margin", v, minimum=0.0), 5.0),
    # The defences the field trusts, beside the blur (chapter 07): randomized smoothing and adversarial training.
    P("smoothing_sigmas", _list("smoothing_sigmas", lambda s: check_float("smoothing_sigmas", s, minimum=0.0, maximum=4.0,
                                                                          strict_minimum=True)),
      [0.25, 0.5, 1.0], quick=[0.5], shown=True),
    P("smoothing_n0", _integer("smoothing_n0", minimum=1), 100, quick=50),
    P("smoothing_n", _integer("smoothing_n", minimum=1), 500, quick=200, shown=True),
    P("smoothing_alpha", lambda v: check_float("smoothing_alpha", v, minimum=0.0, maximum=0.5, strict_minimum=True), 0.001),
    P("eot_samples", _integer("eot_samples", minimum=1), 8, quick=4),
    P("adversarial_epsilon", lambda v: check_float("adversarial_epsilon", v, minimum=0.0, maximum=16.0, strict_minimum=True), 2.0,
      shown=True),
    # Performance (chapter 08): how much each speed measurement runs; medians over bench_repeats rounds.
    P("bench_images", _integer("bench_images", minimum=2), 96, quick=12),
    # The engine is timed on the same images as the seed loop: on 12 it cannot fill its batch (measured 34x, against
    # 60x on 32). ART's eager APGD costs nearly as much on 24 images as on 48 (35 s against 40 s), so 48 it stays.
    P("bench_seed_images", _integer("bench_seed_images", minimum=1), 32, quick=3),
    P("bench_repeats", _integer("bench_repeats", minimum=1), 5, quick=1),
    P("bench_peer_images", _integer("bench_peer_images", minimum=1), 48, quick=6),
    # APGD against ART's: a workload of its own (the strong attack's settings of the build before the cascade), so
    # that a change of chapter 6's settings does not move the comparison.
    P("bench_apgd_steps", _integer("bench_apgd_steps", minimum=1), 100, quick=20),
    P("bench_apgd_restarts", _integer("bench_apgd_restarts", minimum=1), 5, quick=2),
    P("bench_batch_sizes", _list("bench_batch_sizes", _integer("bench_batch_sizes", minimum=1)), [4, 16, 64, 256],
      quick=[16, 64]),
    P("bench_inception_size", _inception_size, 75),
    P("bench_inception_batch", _integer("bench_inception_batch", minimum=1), 32, quick=4),
    # InceptionV3's step at the paper's 299 px, for the hardware goal (0: not measured).
    P("bench_inception_paper_batch", _integer("bench_inception_paper_batch", minimum=0), 4, quick=0),
    # Training steps take turns one step at a time, 30 × 3 × bench_repeats rounds: with 150 the Gaussian layer's
    # interval reached from +1.8 % to +5.8 % in one build (a single step varies by ±10 %); with 450 it stayed within 3.2 %.
    P("bench_train_batches", _integer("bench_train_batches", minimum=1), 30, quick=3),
    P("bench_compare_backends", _boolean("bench_compare_backends"), True, quick=False),
)
del P
BY_NAME: dict[str, Parameter] = {p.name: p for p in PARAMETERS}
PROFILES: dict[str, dict[str, Any]] = {
    profile: {p.name: p.value(profile) for p in PARAMETERS} for profile in ("default", "quick", "paper")
}


def profile_parameters(profile: str, *, data_dir: str | None = None) -> dict:
    """The full parameter set of a profile (``paper`` needs ``data_dir``, the ImageNet-style folder)."""
    check_choice("profile", profile, PROFILES)
    params = json.loads(json.dumps(PROFILES[profile]))  # a deep copy
    if profile == "paper":
        if not data_dir:
            raise ValueError("data_dir: the paper profile needs an ImageNet-style folder (make book PROFILE=paper DATA=PATH)")
        params["study_dataset"] = params["arch_dataset"] = f"folder:{data_dir}"
    return params


def check_declared(params: Mapping[str, Any]) -> None:
    """Run the check of every declared parameter present in ``params`` (a notebook's ``globals()``)."""
    for parameter in PARAMETERS:
        if parameter.name in params:
            parameter.check(params[parameter.name])
    if "strong_budgets" in params and "budgets" in params:
        missing = [b for b in params["strong_budgets"] if float(b) not in [float(x) for x in params["budgets"]]]
        if missing:
            raise ValueError(f"strong_budgets: {missing} not in budgets {list(params['budgets'])}; the strong attack is "
                             "compared with PGD at the same budgets")
    if "arch_image_sizes" in params:
        from helpers.training.models import MIN_IMAGE_SIZE

        sizes = params["arch_image_sizes"]
        for arch in params.get("arch_list", sizes):
            if arch not in sizes:
                raise ValueError(f"arch_image_sizes: no image size given for {arch}")
            size = check_int("arch_image_sizes", sizes[arch], minimum=8)
            if size < MIN_IMAGE_SIZE[arch]:
                raise ValueError(f"arch_image_sizes: {arch} needs at least {MIN_IMAGE_SIZE[arch]} px, got {size}")


def shown_parameters() -> list[str]:
    """The parameters each chapter lists in its run-settings line."""
    return [p.name for p in PARAMETERS if p.shown]


def _literal(value: Any) -> str:
    """A parameter value as Python source in the notebooks' style (JSON-like, double quotes)."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"value: cannot write {type(value).__name__} in a parameters cell")


def parameters_cell(names: Sequence[str]) -> str:
    """The source of a notebook's ``parameters`` cell for ``names``: each with its default-profile value."""
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ValueError(f"names: {unknown[0]!r} is not a declared parameter (add it to helpers.book.profiles.PARAMETERS)")
    return "\n".join(f"{name} = {_literal(BY_NAME[name].default)}" for name in names)

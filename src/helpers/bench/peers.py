"""The book's two stronger attacks against the same method in a library, at equal quality (chapter 08).

A speed-up only counts if ours is at least as strong as the library's attack on the same images:

* The minimum-norm attack (:func:`helpers.attacks.minnorm.ddn_l2`) against Foolbox's ``DDNAttack``: the same targeted
  DDN with the same steps, starting radius and γ on the same images and targets. Ours stops an image once it has
  converged (:data:`DDN_STOP_PATIENCE`, :data:`DDN_STOP_TOLERANCE`); Foolbox's runs every image for every step. As
  strong: our median ‖δ‖₂ at most :data:`MEDIAN_TOLERANCE` above Foolbox's (a failed image counts as an infinite
  norm).
* The strong fixed-budget attack (:func:`helpers.attacks.apgd.apgd_l2`, cross-entropy) against ART's
  ``AutoProjectedGradientDescent``: the same budgets, steps and random restarts. As strong: our robust accuracy at
  most :data:`ACCURACY_TOLERANCE` above ART's at every budget (lower is stronger). ART's random starts are seeded,
  so that a rerun gives the same numbers.

Foolbox's DDN is timed in ``repeats`` paired rounds: its run, then one untimed run of ours and
:data:`~helpers.bench.timing.SHORT_ROUNDS` timed ones, then the full budget's passes alone (the ceiling); each of our
runs is set against the library's run of its round, so that a drift of the machine's speed moves both sides of a
ratio alike (the library's first run is the one whose quality is judged). For seconds after an eager
library run the same compiled calls of ours ran up to 1.3× slower, hence the untimed run. ART's APGD, which takes
far longer, is timed once, after ours (ours: traced by an untimed run, then ``repeats`` rounds); its speed-up is the
median over our rounds of the library's time over ours. When a library is missing or fails, its row says so and
stays empty.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from helpers.attacks.apgd import apgd_l2
from helpers.attacks.minnorm import ddn_l2
from helpers.bench.flops import gradient_step
from helpers.bench.reference_attacks import _quiet_import_and_build
from helpers.bench.timing import SHORT_ROUNDS, interleaved_times, materialise, median, paired_ratios, timed_call
from helpers.core.contract import l2_distances
from helpers.core.engine import check_classifier, check_model_images, predict_logits
from helpers.core.validate import check_int, check_labels

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

PEER_GOAL = 6  # × faster than the library, at least as strong
MEDIAN_TOLERANCE = 0.02  # DDN: our median ‖δ‖₂ may be up to 2 % above the library's
ACCURACY_TOLERANCE = 0.01  # APGD: our robust accuracy may be up to 1 point above the library's, at each budget
DDN_INIT_EPSILON, DDN_GAMMA = 1.0, 0.05  # ddn_l2's and Foolbox's defaults
# Ours stops an image once its smallest ‖δ‖₂ has shrunk by less than 1 % over its last 10 steps. Chosen on the default
# profile's 96 digits before the comparison was timed: 52 steps per image instead of 100, median ‖δ‖₂ 0.2 % above the
# full budget's; a 0.5 % tolerance took 63 steps.
DDN_STOP_PATIENCE, DDN_STOP_TOLERANCE = 10, 0.01


@dataclass
class PeerRun:
    """One of our attacks and its library peer on the same images: quality and seconds of each."""

    attack: str  # ours, as the book names it
    peer: str  # the library's attack
    status: str  # "ok", "not installed" or "failed: …"
    quality: str  # what "as strong" compares
    ours: list[float]  # our quality numbers (one per budget for APGD, the median ‖δ‖₂ for DDN)
    theirs: list[float]
    as_strong: bool | None  # ours at least as strong as theirs, within the tolerance
    ours_seconds: list[float]
    theirs_seconds: list[float]
    n: int  # images
    image_steps: int  # forward+backward evaluations per run of ours (DDN: fixed; APGD: the most it may need)
    ceiling_seconds: list[float] = field(default_factory=list)  # DDN: the full budget's forward+backward passes, alongside ours
    passes: int | None = None  # DDN: forward+backward passes ours made (``image_steps`` is the full budget's)
    worse_share: float | None = None  # DDN: share of images where our ‖δ‖₂ is more than MEDIAN_TOLERANCE above Foolbox's

    @property
    def ratio(self) -> float | None:
        """The median over the rounds of the library's time over ours (``None`` when the library did not run)."""
        if self.status != "ok":
            return None
        return median(self.round_ratios())

    def round_ratios(self) -> list[float]:
        """The library's time over ours, one value per run of ours. A library timed in several rounds (DDN) is
        paired with each of our runs in the same round; a library timed once is set against each of our runs."""
        theirs, ours = self.theirs_seconds, self.ours_seconds
        if len(theirs) <= 1 or not ours:
            return paired_ratios(theirs, ours)
        if len(ours) % len(theirs):
            raise ValueError(f"ours_seconds: expected the same number of runs in each of the {len(theirs)} rounds, "
                             f"got {len(ours)}")
        per = len(ours) // len(theirs)
        return paired_ratios([t for t in theirs for _ in range(per)], ours)


def ddn_against_foolbox(
    model: keras.Model, images: np.ndarray, labels: np.ndarray, targets: np.ndarray, *, steps: int, version: str | None,
    repeats: int,
) -> PeerRun:
    """Targeted DDN, ours against Foolbox's ``DDNAttack``, with ``steps`` steps on the same images and targets."""
    images, labels, targets = _check(model, images, labels, targets)
    steps = check_int("steps", steps, minimum=1)
    repeats = check_int("repeats", repeats, minimum=1)
    run = PeerRun("DDN (minimum norm, targeted)", f"Foolbox {version or ''} DDNAttack".replace("  ", " "), "not installed",
                  "median ‖δ‖₂", [], [], None, [], [], len(images), len(images) * steps)
    if version is None:
        return run

    def ours():
        return ddn_l2(model, images, labels, targets=targets, steps=steps, init_epsilon=DDN_INIT_EPSILON, gamma=DDN_GAMMA,
                      stop_patience=DDN_STOP_PATIENCE, stop_tolerance=DDN_STOP_TOLERANCE)

    def build():
        import foolbox

        return foolbox, foolbox.TensorFlowModel(model, bounds=(0.0, 1.0))

    try:
        foolbox, fmodel = _quiet_import_and_build(build)
        attack = foolbox.attacks.DDNAttack(init_epsilon=DDN_INIT_EPSILON, steps=steps, gamma=DDN_GAMMA)
        # int64 targets: eagerpy 0.30 breaks on NumPy 2 when the criterion mixes int32 and int64 labels.
        criterion = foolbox.criteria.TargetedMisclassification(tf.constant(targets, tf.int64))

        def theirs():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, adversarial, success = attack(fmodel, tf.constant(images), criterion, epsilons=None)
            return adversarial.numpy(), success.numpy()

    except Exception as error:  # noqa: BLE001 - a library that breaks is reported, not hidden
        return _failed(run, error)
    mine = ours()  # traces the compiled loop; the run whose quality is judged
    # The ceiling: the full budget's forward+backward passes on DDN's batches of 256, without DDN.
    step = gradient_step(model)
    batches = [(tf.constant(images[i : i + 256]), tf.constant(targets[i : i + 256])) for i in range(0, len(images), 256)]

    def ceiling():
        return [step(x, t) for x, t in batches for _ in range(steps)]

    materialise(ceiling())  # traces the step
    try:
        adversarial, success = _paired_rounds(run, theirs, ours, ceiling, repeats=repeats)
    except Exception as error:  # noqa: BLE001
        return _failed(run, error)
    theirs_l2 = np.where(np.asarray(success, bool), l2_distances(adversarial, images), np.inf)
    ours_l2 = np.where(mine.success, mine.l2, np.inf)
    run.ours, run.theirs = [_median_norm(mine.l2, mine.success)], [float(np.median(theirs_l2))]
    run.as_strong = bool(run.ours[0] <= (1 + MEDIAN_TOLERANCE) * run.theirs[0])
    run.passes = int((mine.steps + (mine.steps == steps)).sum())  # an image run to the end also judges its last iterate
    run.worse_share = float(np.mean(ours_l2 > (1 + MEDIAN_TOLERANCE) * theirs_l2))
    run.status = "ok"
    return run


def _paired_rounds(run: PeerRun, theirs: Callable[[], Any], ours: Callable[[], Any], ceiling: Callable[[], Any], *,
                   repeats: int) -> Any:
    """``repeats`` paired rounds into ``run``'s seconds: the library's run, then ours SHORT_ROUNDS times after one
    untimed run (for seconds after an eager library run the same compiled calls ran slower), then the ceiling once.
    Each of ours is set against the library's run of its round, so that a drift of the machine's speed moves both
    sides of a ratio alike. Returns the library's first result."""
    first = None
    for _ in range(repeats):
        result, seconds = timed_call(theirs)
        first = result if first is None else first
        run.theirs_seconds.append(seconds)
        run.ours_seconds += interleaved_times({"ours": ours}, repeats=SHORT_ROUNDS, warmup=1)["ours"]
        run.ceiling_seconds.append(timed_call(ceiling)[1])
    return first


def apgd_against_art(
    model: keras.Model, images: np.ndarray, labels: np.ndarray, *, budgets: list[float], steps: int, restarts: int,
    version: str | None, repeats: int,
) -> PeerRun:
    """Untargeted APGD with the cross-entropy, ours against ART's ``AutoProjectedGradientDescent``: the same
    ``budgets``, ``steps`` and ``restarts`` on the same images (ART runs one budget at a time)."""
    images, labels, _ = _check(model, images, labels, None)
    budgets = [float(b) for b in budgets]
    steps = check_int("steps", steps, minimum=1)
    restarts = check_int("restarts", restarts, minimum=1)
    repeats = check_int("repeats", repeats, minimum=1)
    num_classes = check_classifier(model)
    run = PeerRun("APGD-CE (strong attack)", f"ART {version or ''} AutoProjectedGradientDescent".replace("  ", " "),
                  "not installed", "robust accuracy at ε = " + ", ".join(f"{b:g}" for b in budgets), [], [], None, [], [],
                  len(images), len(images) * len(budgets) * restarts * steps)
    if version is None:
        return run

    def ours():
        return apgd_l2(model, images, labels, budgets=budgets, steps=steps, restarts=restarts, loss="cross_entropy")

    def build():
        from art.attacks.evasion import AutoProjectedGradientDescent
        from art.estimators.classification import TensorFlowV2Classifier

        classifier = TensorFlowV2Classifier(
            model=model, nb_classes=num_classes, input_shape=images.shape[1:], clip_values=(0.0, 1.0),
            loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        # ART starts the step size η at eps_step; APGD (and our engine) at 2ε.
        return [AutoProjectedGradientDescent(
            classifier, norm=2, eps=eps, eps_step=2 * eps, max_iter=steps, targeted=False, nb_random_init=restarts,
            batch_size=len(images), loss_type="cross_entropy", verbose=False) for eps in budgets]

    try:
        attacks = _quiet_import_and_build(build)
        one_hot = np.eye(num_classes, dtype=np.float32)[labels]

        def theirs() -> list[np.ndarray]:
            state = np.random.get_state()  # ART draws its random starts from NumPy's global generator
            np.random.seed(0)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return [attack.generate(images, y=one_hot) for attack in attacks]
            finally:
                np.random.set_state(state)

    except Exception as error:  # noqa: BLE001
        return _failed(run, error)
    mine = ours()
    ours_seconds = interleaved_times({"ours": ours}, repeats=repeats, warmup=1)["ours"]  # before the library's run
    try:
        adversarial, first = timed_call(theirs)
    except Exception as error:  # noqa: BLE001
        return _failed(run, error)
    run.ours = [float(a) for a in mine.accuracy]
    run.theirs = [float((predict_logits(model, adv).argmax(axis=1) == labels).mean()) for adv in adversarial]
    run.as_strong = bool(np.all(np.array(run.ours) <= np.array(run.theirs) + ACCURACY_TOLERANCE + 1e-9))
    run.theirs_seconds = [first]
    run.ours_seconds = ours_seconds
    run.status = "ok"
    return run


@dataclass
class PeerComparison:
    """Both comparisons, for the chapter's table, glue and goals."""

    runs: dict[str, PeerRun]  # "ddn", "apgd"

    def record(self) -> dict[str, Any]:
        return {name: asdict(run) | {"ratio": run.ratio} for name, run in self.runs.items()}

    def table(self) -> Styler:
        rows = []
        for run in self.runs.values():
            row = {"our attack": run.attack, "library": run.peer, "images": run.n, "quality": run.quality}
            if run.status == "ok":
                row |= {"ours": _quality_text(run.ours, run.quality), "theirs": _quality_text(run.theirs, run.quality),
                        "ours as strong": "yes" if run.as_strong else "no", "ours s": median(run.ours_seconds),
                        "theirs s": median(run.theirs_seconds), "ours ×": run.ratio}
            else:
                row |= {"ours": run.status}
            rows.append(row)
        return pd.DataFrame(rows).style.format({"ours s": "{:.2f}", "theirs s": "{:.1f}", "ours ×": "{:.1f}"},
                                               na_rep="—").hide(axis="index")

    def glued(self) -> dict[str, Any]:
        failed = [f"{run.peer}: {run.status}" for run in self.runs.values() if run.status != "ok"]
        values: dict[str, Any] = {"peer_runs": "; ".join(failed) + "." if failed else "Both library runs completed."}
        for name, run in self.runs.items():
            ok = run.status == "ok"
            values[f"{name}_peer_ratio"] = run.ratio if ok else float("nan")
            values[f"{name}_peer_images"] = run.n
            values[f"{name}_peer_same"] = ("was at least as strong as" if run.as_strong else "was weaker than") if ok else "—"
        values["ddn_peer_stopping"] = _stopping_sentence(self.runs["ddn"]) if "ddn" in self.runs else ""
        return values

    def goal_rows(self) -> list[tuple[str, list[float] | None, bool | None, str]]:
        """(goal name, the library's time over ours in each of our timed rounds, ours as strong, note) per comparison;
        the note says why the goal would be missed (shown only when it is)."""
        rows = []
        for name, run in self.runs.items():
            goal = {"ddn": "DDN vs Foolbox, median ‖δ‖₂ as small (×)", "apgd": "APGD vs ART, robust accuracy as low (×)"}[name]
            if run.status != "ok":
                rows.append((goal, None, None, ""))
            else:
                rows.append((goal, run.round_ratios(), run.as_strong, _peer_note(run)))
        return rows


def peer_comparison(
    model: keras.Model, images: np.ndarray, labels: np.ndarray, targets: np.ndarray, versions: Mapping[str, str | None],
    *, n_images: int, minnorm_steps: int, budgets: list[float], steps: int, restarts: int, repeats: int,
) -> PeerComparison:
    """DDN against Foolbox's on every image of the workload, APGD against ART's on its first ``n_images``."""
    n_images = check_int("n_images", n_images, minimum=1)
    ddn = ddn_against_foolbox(model, images, labels, targets, steps=minnorm_steps, version=versions.get("foolbox"),
                              repeats=repeats)
    apgd = apgd_against_art(model, images[:n_images], labels[:n_images], budgets=budgets, steps=steps, restarts=restarts,
                            version=versions.get("art"), repeats=repeats)
    return PeerComparison({"ddn": ddn, "apgd": apgd})


def _check(model, images, labels, targets) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    num_classes = check_classifier(model)
    images = check_model_images(model, images)
    labels = check_labels("labels", labels, length=len(images), num_classes=num_classes).astype(np.int32)
    if targets is not None:
        targets = check_labels("targets", targets, length=len(images), num_classes=num_classes).astype(np.int32)
    return images, labels, targets


def _median_norm(l2: np.ndarray, success: np.ndarray) -> float:
    """The median ‖δ‖₂, an image without an adversarial counting as infinitely far."""
    return float(np.median(np.where(np.asarray(success, bool), l2, np.inf)))


def _failed(run: PeerRun, error: Exception) -> PeerRun:
    run.status = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"
    return run


def _quality_text(values: list[float], quality: str) -> str:
    if quality.startswith("median"):
        return f"{values[0]:.4f}"
    return ", ".join(f"{100 * v:.1f} %" for v in values)


def _stopping_sentence(run: PeerRun) -> str:
    """What our DDN's early stopping saved and what it cost, in words (empty when the comparison did not run)."""
    if run.status != "ok" or run.passes is None:
        return ""
    full = run.image_steps + run.n  # every image judged at each of its steps and once more at the end
    return (f"Here it made {run.passes:,} forward and backward passes, {100 * run.passes / full:.0f} % of the {full:,} that "
            f"Foolbox's made; on {100 * run.worse_share:.0f} % of the images its ‖δ‖₂ ended more than "
            f"{100 * MEDIAN_TOLERANCE:.0f} % above Foolbox's: stopping early costs some images a little, while the median, "
            "which the goal compares, hardly moves.")


def _peer_note(run: PeerRun) -> str:
    """Why a comparison missed its goal: ours weaker, or how close ours runs to the model's own ceiling."""
    if not run.as_strong:
        return f"ours is weaker: ours {_quality_text(run.ours, run.quality)}, theirs {_quality_text(run.theirs, run.quality)}"
    if not run.ceiling_seconds:
        return ""
    ceiling, theirs = median(run.ceiling_seconds), median(run.theirs_seconds)
    note = (f"ours took {median(run.ours_seconds):.2f} s; the full budget's {run.image_steps} forward+backward passes alone "
            f"took {ceiling:.2f} s (timed alongside), {theirs / ceiling:.1f}× faster than the library")
    if run.passes is None:
        return note
    # At the speed of the passes alone, PEER_GOAL times the library's speed leaves time for this many passes.
    allowed = theirs / PEER_GOAL / (ceiling / run.image_steps)
    return note + f"; {PEER_GOAL}× its speed leaves time for {allowed:.0f} such passes, ours made {run.passes}"

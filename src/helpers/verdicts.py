"""Verdicts on the paper's claims and the sanity checks of an adaptive evaluation, from measured results.

Every rule is a small pure function of numbers the notebooks wrote, so that the book can state the rule
next to the verdict and a test can pin it down. A verdict is one of :data:`VERDICTS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from helpers.stats import bootstrap_ci
from helpers.validate import check_choice, check_float, check_int

VERDICTS = ("confirmed", "partly", "refuted", "inconclusive")
# One line per claim, in the order of the verdict table.
CLAIMS = {
    "C1": "The targeted attack fools the networks with changes a human cannot see",
    "C2": "The deeper VGG16 needs a visibly larger perturbation than InceptionV3",
    "C3": "Training and classifying with a Gaussian blur keeps good accuracy and makes the attack's perturbation larger",
    "C4": "The Gaussian filter gives better accuracy than the median filter",
    "C5": "Gaussian σ = 1.5 is the best filter by accuracy × ‖I_adv − I‖",
    "C6": "Beyond the paper: the blur defence still helps against an attacker who knows it",
}
# "Imperceptible": a per-pixel RMS change of at most 8/255, the common L∞ budget of 'small' perturbations
# (RMS ≤ L∞, so this is the lenient side of that budget).
RMS_THRESHOLD = 8 / 255
# C2: both architectures must reach this clean accuracy before their perturbations are compared.
MIN_ARCH_ACCURACY = 0.6
# C3: "keeps good accuracy" = at most this many accuracy points below the undefended model.
ACCURACY_TOLERANCE = 0.02
# C4: a difference in accuracy counts when it exceeds this many seed standard deviations.
SEED_SPREADS = 2


def _verdict(value: str) -> str:
    return check_choice("verdict", value, VERDICTS)


def imperceptibility_verdict(
    rows: Sequence[Mapping], *, rms_threshold: float = RMS_THRESHOLD, min_success: float = 0.9, min_attacked: int = 10
) -> dict[str, str]:
    """C1 from the attack table (one row per model: model, n_attacked, success_rate, median_rms).

    A model *fools* when ``success_rate ≥ min_success`` and is *imperceptible* when the median per-pixel RMS
    of its successful perturbations is ``≤ rms_threshold``. Only models attacked on ``min_attacked`` images
    or more count. Confirmed: every counted model does both; refuted: none does either; partly otherwise;
    inconclusive: no model counts.
    """
    rms_threshold = check_float("rms_threshold", rms_threshold, minimum=0.0, strict_minimum=True)
    min_success = check_float("min_success", min_success, minimum=0.0, maximum=1.0)
    min_attacked = check_int("min_attacked", min_attacked, minimum=1)
    if not rows:
        return {"verdict": "inconclusive", "evidence": "no attack results"}
    parts, fools, small = [], [], []
    for row in rows:
        n, success, rms = int(float(row["n_attacked"])), float(row["success_rate"]), float(row["median_rms"])
        counted = n >= min_attacked
        parts.append(f"{row['model']}: {success:.0%} success, median RMS {rms:.4f} (n = {n}{'' if counted else ', too few, not counted'})")
        if counted:
            fools.append(success >= min_success)
            small.append(bool(np.isfinite(rms) and rms <= rms_threshold))
    criterion = f"criterion: success ≥ {min_success:.0%} and median per-pixel RMS ≤ 8/255 = {rms_threshold:.4f}"
    evidence = "; ".join(parts) + f" — {criterion}"
    if not fools:
        return {"verdict": "inconclusive", "evidence": evidence}
    if all(fools) and all(small):
        verdict = "confirmed"
    elif not any(fools) and not any(small):
        verdict = "refuted"
    else:
        verdict = "partly"
    return {"verdict": verdict, "evidence": evidence}


def architecture_verdict(
    accuracy: Mapping[str, float],
    rms: Mapping[str, np.ndarray],
    *,
    deeper: str = "vgg16",
    shallower: str = "inception_v3",
    min_accuracy: float = MIN_ARCH_ACCURACY,
    seed: int = 0,
) -> dict[str, str]:
    """C2: does ``deeper`` need a larger perturbation than ``shallower``?

    Args:
        accuracy: clean accuracy per architecture.
        rms: per architecture, the per-pixel RMS of its successful perturbations.

    Both must reach ``min_accuracy`` (weak models say nothing about the paper's trained networks). Confirmed:
    the bootstrap interval of ``deeper``'s median RMS lies above ``shallower``'s; refuted: below; inconclusive
    when they overlap or either architecture was not attacked.
    """
    min_accuracy = check_float("min_accuracy", min_accuracy, minimum=0.0, maximum=1.0)
    attacked = deeper in rms and shallower in rms
    if attacked and not all(accuracy.get(a, 0.0) >= min_accuracy for a in (deeper, shallower)):
        return {"verdict": "inconclusive", "evidence": (
            f"the models are too weak to compare (clean accuracy VGG16 {accuracy[deeper]:.0%}, InceptionV3 "
            f"{accuracy[shallower]:.0%}; we require at least {100 * min_accuracy:.0f} %)")}
    if not attacked or not len(rms[deeper]) or not len(rms[shallower]):
        return {"verdict": "inconclusive", "evidence": "this profile does not attack both VGG16 and InceptionV3"}
    vgg, inc = np.asarray(rms[deeper]), np.asarray(rms[shallower])
    lo_v, hi_v = bootstrap_ci(vgg, statistic=np.median, seed=seed)
    lo_i, hi_i = bootstrap_ci(inc, statistic=np.median, seed=seed)
    verdict = "confirmed" if lo_v > hi_i else ("refuted" if hi_v < lo_i else "inconclusive")
    return {"verdict": verdict, "evidence": (
        f"median RMS per pixel: VGG16 {np.median(vgg):.4f} [{lo_v:.4f}, {hi_v:.4f}] vs InceptionV3 "
        f"{np.median(inc):.4f} [{lo_i:.4f}, {hi_i:.4f}] (n = {len(vgg)}, {len(inc)})")}


NO_SUCCESS = "no attack reached its target on the models compared, so they have no perturbation size to score"


def _best(rows: Sequence[Mapping], column: str) -> Mapping | None:
    """The first row with the highest finite ``column`` (like pandas' idxmax)."""
    best = None
    for row in rows:
        value = float(row[column])
        if np.isfinite(value) and (best is None or value > float(best[column])):
            best = row
    return best


def best_by_kind(rows: Sequence[Mapping], *, column: str = "score") -> dict[str, str | None]:
    """The defence with the highest ``column`` overall (``best_defence``) and per filter kind (``best_<kind>``),
    from chapter 5's score table (rows with ``defence``, ``kind`` and ``column``)."""
    from helpers.filters import FILTER_KINDS

    best = _best(rows, column)
    picks: dict[str, str | None] = {"best_defence": best["defence"] if best else None}
    for kind in FILTER_KINDS:
        row = _best([r for r in rows if r["kind"] == kind], column)
        picks[f"best_{kind}"] = row["defence"] if row else None
    return picks


def gaussian_accuracy_and_size_verdict(rows: Sequence[Mapping], *, tolerance: float = ACCURACY_TOLERANCE) -> dict[str, str]:
    """C3 from chapter 5's score table: the Gaussian filter with the best score keeps accuracy within ``tolerance``
    of no filter *and* the interval of its mean ‖δ‖₂ lies above the undefended one. Confirmed: both; partly:
    one; refuted: neither; inconclusive: no Gaussian in the grid."""
    tolerance = check_float("tolerance", tolerance, minimum=0.0, maximum=1.0)
    none = next(r for r in rows if r["defence"] == "none")
    gauss = [r for r in rows if r["kind"] == "gaussian"]
    g_best = _best(gauss, "score")
    if not gauss:
        return {"verdict": "inconclusive", "evidence": "no Gaussian filter in this run's grid"}
    if g_best is None or not np.isfinite(float(none["mean_l2"])):
        return {"verdict": "inconclusive", "evidence": NO_SUCCESS}
    keeps = g_best["clean_accuracy"] >= none["clean_accuracy"] - tolerance
    larger = g_best["mean_l2_lo"] > none["mean_l2_hi"]
    verdict = "confirmed" if keeps and larger else "partly" if keeps or larger else "refuted"
    return {"verdict": verdict, "evidence": (
        f"{g_best['label']}: accuracy {g_best['clean_accuracy']:.1%} vs {none['clean_accuracy']:.1%} without filter; "
        f"mean ‖δ‖₂ {g_best['mean_l2']:.2f} [{g_best['mean_l2_lo']:.2f}, {g_best['mean_l2_hi']:.2f}] vs "
        f"{none['mean_l2']:.2f} [{none['mean_l2_lo']:.2f}, {none['mean_l2_hi']:.2f}]")}


def gaussian_beats_median_verdict(rows: Sequence[Mapping], *, spreads: float = SEED_SPREADS) -> dict[str, str]:
    """C4 from chapter 5's score table: the most accurate Gaussian against the most accurate median. Confirmed
    when it is more accurate by more than ``spreads`` seed standard deviations, refuted when less accurate by
    as much, inconclusive otherwise (or when a family is missing)."""
    gauss = [r for r in rows if r["kind"] == "gaussian"]
    median = [r for r in rows if r["kind"] == "median"]
    if not gauss or not median:
        return {"verdict": "inconclusive", "evidence": "this run's grid lacks Gaussian or median filters"}
    g_acc, m_acc = _best(gauss, "clean_accuracy"), _best(median, "clean_accuracy")
    spread = np.nanmax([g_acc["accuracy_std"], m_acc["accuracy_std"], 0.0])
    diff = g_acc["clean_accuracy"] - m_acc["clean_accuracy"]
    verdict = "confirmed" if diff > spreads * spread and diff > 0 else "refuted" if diff < -spreads * spread else "inconclusive"
    mean_g = float(np.mean([r["clean_accuracy"] for r in gauss]))
    mean_m = float(np.mean([r["clean_accuracy"] for r in median]))
    return {"verdict": verdict, "evidence": (
        f"best Gaussian {g_acc['label']} {g_acc['clean_accuracy']:.2%} vs best median {m_acc['label']} "
        f"{m_acc['clean_accuracy']:.2%} (seed std up to {spread:.2%}); mean over the grid: Gaussian "
        f"{mean_g:.2%}, median {mean_m:.2%}")}


def paper_choice_verdict(rows: Sequence[Mapping], *, choice: str = "gaussian:1.5") -> dict[str, str]:
    """C5 from chapter 5's score table: is ``choice`` the filter with the highest score? Confirmed: it is;
    partly: its score interval reaches the best one's; refuted: it does not; inconclusive: not in the grid."""
    paper = next((r for r in rows if r["defence"] == choice), None)
    if paper is None:
        return {"verdict": "inconclusive", "evidence": "σ = 1.5 is not in this run's grid"}
    best = _best(rows, "score")
    if best is None or not np.isfinite(float(paper["score"])):
        return {"verdict": "inconclusive", "evidence": NO_SUCCESS}
    if best["defence"] == choice:
        verdict = "confirmed"
    elif paper["score_hi"] >= best["score_lo"]:
        verdict = "partly"
    else:
        verdict = "refuted"
    return {"verdict": verdict, "evidence": (
        f"best score {best['label']} {best['score']:.3f} [{best['score_lo']:.3f}, {best['score_hi']:.3f}]; "
        f"Gaussian σ=1.5 {paper['score']:.3f} [{paper['score_lo']:.3f}, {paper['score_hi']:.3f}]")}


def adaptive_verdict(
    budgets: Sequence[float],
    undefended: np.ndarray,
    defended: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    *,
    margin: float = 0.05,
) -> dict[str, str]:
    """C6: does a blur defence keep more robust accuracy than no defence, against the strongest attack?

    Args:
        budgets: the L2 budgets ε.
        undefended: robust accuracy of the undefended model at each budget.
        defended: per defended model, (accuracy, difference to undefended, CI low, CI high) at each budget
            (paired bootstrap interval of the difference).
        margin: a gain smaller than this is of no practical use.

    Only budgets ε > 0 at which at least one of the two models keeps some accuracy are compared. A model
    *helps* at a budget when the interval of its gain lies above 0, *hurts* when it lies below 0.
    Confirmed: some model helps at every compared budget; partly: some model helps at some; refuted: none
    helps anywhere and some model hurts, or no gain above ``margin`` fits any interval; inconclusive otherwise.
    """
    budgets = np.asarray(budgets, dtype=np.float64)
    undefended = np.asarray(undefended, dtype=np.float64)
    margin = check_float("margin", margin, minimum=0.0, maximum=1.0)
    if not defended:
        return {"verdict": "inconclusive", "evidence": "no defended model was evaluated"}
    best, parts, any_hurts, all_small = None, [], False, True
    for name, (accuracy, diff, low, high) in defended.items():
        accuracy, diff, low, high = (np.asarray(a, dtype=np.float64) for a in (accuracy, diff, low, high))
        compared = (budgets > 0) & ((undefended > 0) | (accuracy > 0))
        if not compared.any():
            continue
        helps = compared & (low > 0)
        hurts = compared & (high < 0)
        any_hurts |= bool(hurts.any())
        all_small &= bool((high[compared] < margin).all())
        at = [f"ε={e:g}: {d:+.0%} [{lo:+.0%}, {hi:+.0%}]" for e, d, lo, hi in zip(budgets[compared], diff[compared], low[compared], high[compared], strict=True)]
        parts.append(f"{name}: " + ", ".join(at))
        score = (int(helps.sum()), int(compared.sum()), float(diff[compared].mean()))
        if best is None or score[0] > best[1][0] or (score[0] == best[1][0] and score[2] > best[1][2]):
            best = (name, score)
    if best is None:
        return {"verdict": "inconclusive", "evidence": "every model is at 0 % accuracy at every budget > 0"}
    name, (n_helps, n_compared, _) = best
    if n_helps == n_compared:
        verdict = "confirmed"
    elif n_helps > 0:
        verdict = "partly"
    elif any_hurts or all_small:
        verdict = "refuted"
    else:
        verdict = "inconclusive"
    summary = f"most favourable: {name}, significantly better at {n_helps} of {n_compared} budgets"
    return {"verdict": verdict, "evidence": f"{summary}. Defended − undefended robust accuracy (95 % CI): " + "; ".join(parts)}


def sanity_checks(
    *,
    budgets: Sequence[float],
    curves: Mapping[str, np.ndarray],
    worst: Mapping[str, np.ndarray],
    clean: Mapping[str, float],
    noise: Mapping[str, np.ndarray],
    zero_gradients: Mapping[str, int],
    more_steps: tuple[str, np.ndarray, np.ndarray],
    n_images: int,
    floor: float = 0.05,
) -> list[dict[str, str | bool]]:
    """The checks of Carlini et al. (2019) that a fixed-budget evaluation must pass, one row each.

    Args:
        budgets: the L2 budgets ε (increasing).
        curves: robust accuracy per (model, attack) curve.
        worst: per model, accuracy under its strongest attack (per-image minimum over attacks).
        clean: per model, accuracy on the clean sample (ε = 0).
        noise: per model, accuracy under random noise of the same norms.
        zero_gradients: per (model, attack), images whose gradient is exactly zero at the start.
        more_steps: (which curve, accuracy with the usual steps, accuracy with twice as many).
        n_images: images per curve; differences of one image (1/n) are tolerated as noise.
        floor: the accuracy that "about zero" allows at the largest budget.
    """
    budgets = np.asarray(budgets, dtype=np.float64)
    n_images = check_int("n_images", n_images, minimum=1)
    floor = check_float("floor", floor, minimum=0.0, maximum=1.0)
    if len(budgets) < 2 or np.any(np.diff(budgets) <= 0):
        raise ValueError(f"budgets: need at least two increasing budgets, got {budgets.tolist()}")
    one = 1.0 / n_images + 1e-12
    rows = []

    name, usual, doubled = more_steps
    rise = float(np.max(np.asarray(doubled) - np.asarray(usual)))
    rows.append({"check": "more steps never lower success", "scope": f"{name}, twice the steps",
                 "measured": f"accuracy change: at most {rise:+.1%}", "passed": rise <= one})

    rises = {k: float(np.max(np.diff(np.asarray(v)))) for k, v in curves.items()}
    worst_curve = max(rises, key=rises.get)
    rows.append({"check": "a larger budget never raises accuracy", "scope": f"{len(curves)} curves",
                 "measured": f"change to the next budget: at most {rises[worst_curve]:+.1%} ({worst_curve})", "passed": rises[worst_curve] <= one})

    last = {k: float(np.asarray(v)[-1]) for k, v in worst.items()}
    highest = max(last, key=last.get)
    rows.append({"check": f"at the largest budget accuracy falls to about 0 (≤ {floor:.0%})", "scope": f"ε = {budgets[-1]:g}, {len(worst)} models",
                 "measured": f"highest {last[highest]:.1%} ({highest})", "passed": last[highest] <= floor})

    zeros = int(sum(zero_gradients.values()))
    rows.append({"check": "no image has a zero gradient", "scope": f"{len(zero_gradients)} model/attack pairs",
                 "measured": f"{zeros} images with ‖∇‖ = 0", "passed": zeros == 0})

    nonzero = budgets > 0
    ratios, below = {}, {}
    for k in worst:
        attack_damage = float(np.mean(clean[k] - np.asarray(worst[k])[nonzero]))
        noise_damage = float(np.mean(clean[k] - np.asarray(noise[k])[nonzero]))
        ratios[k] = noise_damage / attack_damage if attack_damage > 0 else float("inf")
        below[k] = float(np.max(np.asarray(worst[k]) - np.asarray(noise[k])))
    strongest_noise = max(ratios, key=ratios.get)
    passed = ratios[strongest_noise] <= 0.5 and max(below.values()) <= one
    rows.append({"check": "random noise of the same ‖δ‖₂ is far weaker (under half the attack's damage)", "scope": f"{len(worst)} models",
                 "measured": f"noise does {ratios[strongest_noise]:.0%} of the attack's damage at most ({strongest_noise})", "passed": passed})
    return rows


def verdict_rows(claims: Mapping[str, Mapping[str, str]]) -> list[dict[str, str]]:
    """Rows ``claim, verdict, evidence`` for C1–C6; a claim missing from ``claims`` is inconclusive."""
    rows = []
    for key, text in CLAIMS.items():
        claim = claims.get(key) or {"verdict": "inconclusive", "evidence": "not computed in this run"}
        rows.append({"claim": f"{key}: {text}", "verdict": _verdict(claim["verdict"]), "evidence": str(claim["evidence"])})
    return rows

"""Verdicts on the paper's claims and the sanity checks of an adaptive evaluation, from measured results.

Every rule is a small pure function of numbers the notebooks wrote, so that the book can state the rule
next to the verdict and a test can pin it down. A verdict is one of :data:`VERDICTS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

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

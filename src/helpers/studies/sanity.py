"""The sanity checks that gate the adaptive verdicts (Carlini et al. 2019): one row per check and model, each with
what was measured, its threshold and whether it passed; a failed check makes the verdict it gates inconclusive."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from helpers.core.validate import check_float, check_int
from helpers.studies.verdicts import MIN_ACCURACY_EFFECT

# How far above the gradient attacks' worst case the gradient-free attack alone may leave the undefended model's
# accuracy (at every strong budget) and still count as a check for gradient masking; stated before the data.
SQUARE_REACH = 0.10
SQUARE_REACH_CHECK = "the gradient-free attack alone comes close to the gradient attacks"
SQUARE_MASKING_CHECK = "the gradient-free attack with more queries breaks nothing the gradient attacks left"
# Checks whose failure only forbids a positive verdict: a masking check too weak to see masking cannot make a blur look
# worse than it is, and a digit that only a gradient-free attack breaks is a sign of masking, which can only inflate a
# defended model's robustness; either leaves "refuted" standing.
POSITIVE_ONLY = (SQUARE_REACH_CHECK, SQUARE_MASKING_CHECK)


def sanity_checks(
    *,
    budgets: Sequence[float],
    unbounded_success: Mapping[str, float],
    curves: Mapping[str, Mapping[str, np.ndarray]],
    worst: Mapping[str, np.ndarray],
    noise: Mapping[str, np.ndarray],
    more_effort: Mapping[str, tuple[np.ndarray, np.ndarray]],
    square_reach: Mapping[str, tuple[np.ndarray, np.ndarray]],
    transfer: Mapping[str, tuple[np.ndarray, np.ndarray]],
    square_masking: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    n_first: int | None = None,
    zero_gradients: Mapping[str, tuple[int, int]],
    n_images: int,
    n_strong: int,
    floor: float = 0.05,
    effort_scope: str = "every seed and strong budget",
) -> list[dict]:
    """The checks of Carlini et al. (2019), one row per check and model, each with the number behind it.

    Args:
        budgets: the L2 budgets ε of the curves (increasing, starting at 0).
        unbounded_success: per model, the success rate of the unbounded attack (the paper's, better gradient).
        curves: per model, every robust-accuracy curve measured (per seed and attack), on ``budgets``.
        worst: per model, the worst-case curve (over attacks, mean over seeds) on ``budgets``.
        noise: per model, the accuracy under random noise of the same norms (mean over seeds) on ``budgets``.
        more_effort: per model, (worst-case accuracy as found, after its strongest APGD variant ran again with twice
            the steps and restarts) at each strong budget, mean over seeds.
        square_reach: per model (the undefended one), (the gradient attacks' worst-case accuracy, the gradient-free
            attack's alone) at each strong budget: a masking check is only as good as its gradient-free attack.
        transfer: per defended model, (its white-box worst-case accuracy, its accuracy on the undefended
            model's adversarial images) at the same budgets.
        square_masking: per defended model, (the gradient attacks' worst-case accuracy, the same after the
            gradient-free attack of the reach check ran on every digit they left) at each strong budget, on the
            first ``n_first`` digits (all of ``n_strong`` when None): one digit per budget is tolerated as noise.
        zero_gradients: per model, (gradients exactly 0, gradients computed) at the clean images and at random
            points of the ε-balls, over every gradient the attacker uses.
        n_images, n_strong: images per curve and in the strong subset; a difference of one image is noise.
        floor: the accuracy that "about zero" allows at the largest budget.
        effort_scope: where ``more_effort`` was measured, as its row says it.
    """
    budgets = np.asarray(budgets, dtype=np.float64)
    n_images = check_int("n_images", n_images, minimum=1)
    n_strong = check_int("n_strong", n_strong, minimum=1)
    floor = check_float("floor", floor, minimum=0.0, maximum=1.0)
    if len(budgets) < 2 or np.any(np.diff(budgets) <= 0):
        raise ValueError(f"budgets: need at least two increasing budgets, got {budgets.tolist()}")
    one, one_strong = 1.0 / n_images + 1e-12, 1.0 / n_strong + 1e-12
    little = max(MIN_ACCURACY_EFFECT, one_strong)
    nonzero = budgets > 0
    rows = []

    def row(check: str, model: str, measured: str, value: float, threshold: float, passed: bool, *, at_least: bool = False
            ) -> None:  # margin: how far the value is from the threshold, on the passing side when positive
        rows.append({"check": check, "model": model, "measured": measured, "value": float(value),
                     "threshold": float(threshold), "margin": float(value - threshold if at_least else threshold - value),
                     "passed": bool(passed)})

    for model in worst:
        success = float(unbounded_success[model])
        row("the unbounded attack always succeeds", model, f"success {success:.1%}", success, 1 - one, success >= 1 - one,
            at_least=True)
        rises = {k: float(np.max(np.diff(np.asarray(v, dtype=np.float64)))) for k, v in curves[model].items()}
        name = max(rises, key=rises.get)
        row("a larger budget never raises accuracy", model, f"largest rise {rises[name]:+.1%} ({name})", rises[name], one,
            rises[name] <= one)
        last = float(np.asarray(worst[model])[-1])
        row(f"accuracy reaches about 0 at the largest budget (ε = {budgets[-1]:g})", model, f"{last:.1%}", last, floor, last <= floor)
        usual, doubled = (np.asarray(a, dtype=np.float64) for a in more_effort[model])
        drop = float(np.max(usual - doubled))
        row("twice the steps and restarts change little", model, f"accuracy falls by at most {drop:.1%} ({effort_scope})", drop,
            little, drop <= little)
        if model in square_reach:
            gradient, free = (np.asarray(a, dtype=np.float64) for a in square_reach[model])
            gap = float(np.max(free - gradient))
            row(SQUARE_REACH_CHECK, model,
                f"its accuracy lies at most {gap:+.1%} above theirs", gap, SQUARE_REACH, gap <= SQUARE_REACH)
        zeros, tried = zero_gradients[model]
        row("no zero gradient, at the clean images or at random points", model, f"{zeros} of {tried} gradients are 0", zeros, 0,
            zeros == 0)
        clean = float(np.asarray(worst[model])[0])
        attack_damage = float(np.mean(clean - np.asarray(worst[model])[nonzero]))
        noise_damage = float(np.mean(clean - np.asarray(noise[model])[nonzero]))
        ratio = noise_damage / attack_damage if attack_damage > 0 else float("inf")
        below = float(np.max(np.asarray(worst[model]) - np.asarray(noise[model])))
        row("random noise of the same ‖δ‖₂ is far weaker", model, f"noise does {ratio:.0%} of the attack's damage", ratio, 0.5,
            ratio <= 0.5 and below <= one)
        if model in (square_masking or {}):
            gradient, after = (np.asarray(a, dtype=np.float64) for a in square_masking[model])
            fell = float(np.max(gradient - after))
            one_first = 1.0 / (n_first or n_strong) + 1e-12
            row(SQUARE_MASKING_CHECK, model, f"it lowers their accuracy by at most {fell:.1%}", fell, one_first, fell <= one_first)
        if model in transfer:
            white, moved = (np.asarray(a, dtype=np.float64) for a in transfer[model])
            excess = float(np.max(white - moved))
            row("white box is at least as strong as transfer", model, f"white box above transfer by at most {excess:+.1%}",
                excess, one_strong, excess <= one_strong)
    return rows


EOT_EFFORT_CHECK = "twice the EOT steps and noise draws change little"


def eot_effort_check(*, model: str, usual: Sequence[float], doubled: Sequence[float], n_images: int) -> dict:
    """The sanity row of a smoothed model's attack (EOT-PGD): with twice the steps and twice the noise draws per step,
    its attacked accuracy (``usual`` → ``doubled``, at each strong budget) may fall by at most the threshold of
    chapter 6's doubled-effort check, so that the attack on smoothing is shown to be as saturated as the blur's."""
    n_images = check_int("n_images", n_images, minimum=1)
    drop = float(np.max(np.asarray(usual, dtype=np.float64) - np.asarray(doubled, dtype=np.float64)))
    little = max(MIN_ACCURACY_EFFECT, 1.0 / n_images + 1e-12)
    return {"check": EOT_EFFORT_CHECK, "model": model, "measured": f"accuracy falls by at most {drop:.1%} (first seed, every "
            "strong budget)", "value": drop, "threshold": float(little), "margin": float(little - drop), "passed": drop <= little}


def certificate_check(*, model: str, budgets: Sequence[float], violations: Sequence[int], n_images: int,
                      largest_radius: float = float("inf")) -> dict | None:
    """The sanity row of a smoothed model: no image is certified correct at a budget where the empirical attack
    broke it (certified accuracy can never exceed attacked accuracy; a certificate fails with probability α).

    None when it cannot fail: no budget ε > 0 lies within ``largest_radius``, the largest radius the certificate can
    reach with its number of noisy copies (:func:`helpers.defences.smoothing.largest_certifiable_radius`), so nothing
    is ever certified there and the check would pass by construction."""
    if not any(0 < b <= largest_radius for b in budgets):
        return None
    worst = int(np.max(violations)) if len(violations) else 0
    where = ", ".join(f"ε = {b:g}: {int(v)}" for b, v in zip(budgets, violations, strict=True) if v)
    return {"check": "certified accuracy never exceeds attacked accuracy", "model": model,
            "measured": f"{worst} of {n_images} digits certified yet broken" + (f" ({where})" if where else ""),
            "value": float(worst), "threshold": 0.0, "margin": float(-worst), "passed": worst == 0}


def failed_checks(checks: Sequence[Mapping]) -> list[str]:
    """The failed checks that make a verdict inconclusive, each as ``"check (model)"``, in the order of ``checks``
    (those of :data:`POSITIVE_ONLY` are left to :func:`failed_positive_only`)."""
    return [f"{c['check']} ({c['model']})" for c in checks if not c["passed"] and c["check"] not in POSITIVE_ONLY]


def failed_positive_only(checks: Sequence[Mapping]) -> list[str]:
    """The failed checks of :data:`POSITIVE_ONLY` (they forbid a positive verdict only), as ``"check (model)"``."""
    return [f"{c['check']} ({c['model']})" for c in checks if not c["passed"] and c["check"] in POSITIVE_ONLY]


def sanity_glued(checks: Sequence[Mapping]) -> dict:
    """The checks that passed, their number and the sentence naming the failed ones, by glue name."""
    failed, weak = failed_checks(checks), failed_positive_only(checks)
    parts = ["Failed: " + "; ".join(failed) + "."] if failed else []
    parts += ["Failed, forbidding a positive verdict only: " + "; ".join(weak) + "."] if weak else []
    return {"sanity_passed": sum(bool(c["passed"]) for c in checks), "sanity_total": len(checks),
            "sanity_sentence": " ".join(parts) or "Every check passes."}

"""Chapter 6's strong evaluation as a cascade, the way AutoAttack runs its attacks: every registered fixed-budget
attack in turn, each only on the (budget, digit) pairs that PGD and every earlier attack left correct.

The worst case is the same as running every attack on every pair (a pair counts as robust only if no attack breaks
it), but an attack spends nothing on pairs already broken, so the whole suite fits on every digit of the study and
every training seed. What each attack adds is what it broke first; the gradient-free attack runs last, so whatever
it breaks is exactly what every gradient attack missed — the sign of gradient masking.

* :func:`cascade` — one model's cascade; :func:`cascade_flags` — the flags after each attack, per seed;
* :func:`added_counts` — what each attack broke first, per model, summed over seeds;
* :func:`doubled_effort` — the strongest APGD variant again with twice the steps and restarts on every pair left.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np

from helpers.attacks.adaptive import bpda_model, needs_bpda
from helpers.attacks.registry import ATTACKS, attacks_of
from helpers.core.validate import check_int

FIRST = "PGD worst"  # the cascade starts from chapter 6's PGD study (exact gradient and BPDA) on every digit


@dataclass(frozen=True)
class Cascade:
    """One model's cascade over ``budgets`` (B, ε = 0 first) and N digits."""

    budgets: np.ndarray
    after_pgd: np.ndarray  # (B, N): correct under PGD; row ε = 0 is the clean digit
    broke: dict[str, np.ndarray]  # attack → (B, N): the pairs it broke first, in the cascade's order

    @property
    def worst(self) -> np.ndarray:
        """(B, N): correct after every attack."""
        return self.after(list(self.broke)[-1]) if self.broke else self.after_pgd

    def after(self, name: str) -> np.ndarray:
        """(B, N): correct after PGD, ``name`` and every attack before it."""
        names = list(self.broke)
        left = self.after_pgd.copy()
        for earlier in names[: names.index(name) + 1]:
            left &= ~self.broke[earlier]
        return left

    def gradient_free_breaks(self) -> np.ndarray:
        """(B, N): the pairs a gradient-free attack broke after every gradient attack had left them correct."""
        free = [b for name, b in self.broke.items() if ATTACKS[name].gradient_free]
        return np.logical_or.reduce(free) if free else np.zeros_like(self.after_pgd)

    def last_gradient_attack(self) -> str | None:
        """The name of the last gradient attack of the cascade (None when there is none)."""
        names = [name for name in self.broke if not ATTACKS[name].gradient_free]
        return names[-1] if names else None


def cascade(model: keras.Model, images: np.ndarray, labels: np.ndarray, *, budgets, after_pgd: np.ndarray,
            settings: Mapping) -> Cascade:
    """Every registered fixed-budget attack on ``model``, each on the (budget, digit) pairs still correct before it.
    The BPDA attacks run where the model's filter is not linear (:func:`helpers.attacks.adaptive.needs_bpda`).

    Args:
        budgets: the B budgets (ε = 0 first: the clean digits, never attacked).
        after_pgd: (B, N) flags, correct under chapter 6's PGD (both gradients) at each budget.
        settings: ``steps``, ``restarts``, ``square_queries``, ``square_restarts`` and ``seed`` (see the registry).
    """
    budgets = np.asarray(budgets, dtype=np.float64)
    left = np.asarray(after_pgd, dtype=bool).copy()
    if left.shape != (len(budgets), len(images)):
        raise ValueError(f"after_pgd: expected ({len(budgets)}, {len(images)}) flags, got shape {left.shape}")
    first = left.copy()
    views = {"exact": model, "none": model, "BPDA": bpda_model(model) if needs_bpda(model) else None}
    broke = {}
    for spec in attacks_of("fixed_budget"):
        if views[spec.gradient] is None:
            continue
        now = left.copy()
        for b in np.flatnonzero(budgets > 0):
            pick = np.flatnonzero(left[b])
            if len(pick):
                found = spec.run(views[spec.gradient], images[pick], labels[pick], budgets=[budgets[b]], settings=settings)
                now[b, pick] &= found.correct[-1]
        broke[spec.name] = left & ~now
        left = now
    return Cascade(budgets=budgets, after_pgd=first, broke=broke)


def cascade_flags(by_seed: Mapping[int, Cascade]) -> dict[str, dict[int, np.ndarray]]:
    """Seed → (B, N) flags: ``"PGD worst"``, after each attack (its name), ``"gradient worst"`` (after the last gradient
    attack) and ``"worst"`` (after every attack)."""
    seeds = list(by_seed)
    first = by_seed[seeds[0]]
    flags = {FIRST: {k: by_seed[k].after_pgd for k in seeds}}
    flags |= {name: {k: by_seed[k].after(name) for k in seeds} for name in first.broke}
    last = first.last_gradient_attack()
    flags["gradient worst"] = {k: by_seed[k].after(last) if last else by_seed[k].after_pgd for k in seeds}
    flags["worst"] = {k: by_seed[k].worst for k in seeds}
    return flags


def added_counts(cascades: Mapping[int, Cascade]) -> dict[str, np.ndarray]:
    """Attack → (B,) pairs it broke first at each budget, summed over seeds; ``"PGD worst"`` first (the pairs correct
    when clean that PGD broke)."""
    seeds = list(cascades)
    out = {FIRST: np.sum([(c.after_pgd[:1] & ~c.after_pgd).sum(axis=1) for c in cascades.values()], axis=0)}
    return out | {name: np.sum([cascades[k].broke[name].sum(axis=1) for k in seeds], axis=0) for name in cascades[seeds[0]].broke}


def doubled_effort(model: keras.Model, found: Cascade, images: np.ndarray, labels: np.ndarray, *, steps: int, restarts: int,
                   seed: int) -> tuple[str, np.ndarray, np.ndarray]:
    """The APGD variant that broke the most pairs first in ``found`` (the first one on a tie), rerun with twice the
    steps and twice the restarts (another random seed) on every pair the whole cascade left correct.

    Returns its name and the (B,) robust accuracy as found and after that rerun."""
    steps, restarts = check_int("steps", steps, minimum=1), check_int("restarts", restarts, minimum=1)
    variants = [n for n in found.broke if ATTACKS[n].family == "APGD"]
    if not variants:
        raise ValueError("found: the cascade ran no APGD variant")
    name = max(variants, key=lambda n: int(found.broke[n].sum()))
    spec = ATTACKS[name]
    view = bpda_model(model) if spec.gradient == "BPDA" else model
    worst = found.worst
    again = worst.copy()
    for b in np.flatnonzero(found.budgets > 0):
        pick = np.flatnonzero(worst[b])
        if len(pick):
            rerun = spec.run(view, images[pick], labels[pick], budgets=[found.budgets[b]],
                             settings={"steps": 2 * steps, "restarts": 2 * restarts, "seed": seed + 1})
            again[b, pick] &= rerun.correct[-1]
    return name, worst.mean(axis=1), again.mean(axis=1)

"""How an interval becomes a verdict, and what it then proves: the rule every interval claim shares
(:func:`decide`), its reading in words (:func:`proves`), and the check that a verdict does not hang on the bootstrap's
own randomness (:func:`with_stability`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from helpers.core.validate import check_float


@dataclass(frozen=True)
class Estimate:
    """An effect with its 95 % interval (a bootstrap over training seeds and images)."""

    effect: float
    low: float
    high: float

    def text(self, *, percent: bool = True) -> str:
        if percent:
            return f"{self.effect:+.1%} [{self.low:+.1%}, {self.high:+.1%}]"
        return f"{self.effect:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def decide(estimate: Estimate, *, minimum: float, refute_below: float | None = None) -> str:
    """Confirmed: the whole interval lies at or above ``minimum`` (every effect too small to matter is excluded).
    Partly: the interval lies above 0 but reaches below ``minimum`` (the direction is established, the size is not).
    Refuted: the interval lies below ``refute_below`` (default ``minimum``: an effect that matters is excluded).
    Otherwise inconclusive."""
    minimum = check_float("minimum", minimum, minimum=0.0)
    refute_below = minimum if refute_below is None else check_float("refute_below", refute_below)
    if not all(np.isfinite([estimate.effect, estimate.low, estimate.high])):
        return "inconclusive"
    if estimate.low >= minimum:
        return "confirmed"
    if estimate.high < refute_below:
        return "refuted"
    if estimate.low > 0:
        return "partly"
    return "inconclusive"


def _signed(value: float) -> str:
    return f"{value:+.1%}".replace("+0.0%", "0").replace("-", "−")


def proves(verdict: str, estimate: Estimate | None, *, minimum: float, refute_below: float | None = None,
           effect: str = "an effect") -> str:
    """What an interval rule's verdict establishes, in words: the size shown, the direction only, what is ruled out,
    or why neither (``effect`` names what is measured, e.g. ``"a gain in accuracy"``)."""
    refute_below = minimum if refute_below is None else refute_below
    if estimate is None or not all(np.isfinite([estimate.effect, estimate.low, estimate.high])):
        return "no interval: nothing is established"
    interval = f"[{_signed(estimate.low)}, {_signed(estimate.high)}]"
    if verdict == "confirmed":
        return f"establishes {effect} of at least {_signed(minimum)}: the whole interval {interval} lies at or above it"
    if verdict == "partly":
        return (f"establishes the direction (the interval {interval} lies above 0) but not the size: effects between "
                f"{_signed(estimate.low)} and {_signed(minimum)} are not excluded")
    if verdict == "refuted":
        ruled = "any positive effect" if refute_below <= 0 else f"{effect} of {_signed(refute_below)} or more"
        return f"rules out {ruled}: the whole interval {interval} lies below {_signed(refute_below)}"
    if refute_below <= 0:
        return f"establishes neither a gain nor a loss: the interval {interval} holds 0"
    return f"establishes neither: the interval {interval} holds 0 and reaches {_signed(minimum)}"


BOOTSTRAP_SEEDS = 20  # a verdict on a bootstrap interval must come out the same under this many other bootstrap seeds


def other_bootstrap_seed(seed: int, i: int) -> int:
    """The ``i``-th other bootstrap seed after ``seed``, far enough apart that the random streams a bootstrap derives
    from its seed (seed, seed + 1, …) do not overlap."""
    return seed + 1000 * (i + 1)


def with_stability(verdict: Mapping, again: Sequence[str]) -> dict:
    """``verdict`` checked against the verdicts the same data gives under other bootstrap seeds (``again``). The count
    of agreeing seeds is recorded (``stability``); if any disagrees, the verdict rests on the bootstrap's own randomness
    and becomes *inconclusive*."""
    same = sum(v == verdict["verdict"] for v in again)
    out = dict(verdict, stability=f"{same}/{len(again)}",
               evidence=f"{verdict['evidence']}; the same verdict under {same} of {len(again)} other bootstrap seeds")
    if same < len(again):
        out |= {"verdict": "inconclusive",
                "proves": f"nothing firm: it would be {verdict['verdict']}, but {len(again) - same} of {len(again)} other "
                          "bootstrap seeds give another verdict"}
    return out

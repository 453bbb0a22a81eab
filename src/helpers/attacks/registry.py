"""The registry of attacks that the studies loop over.

Each attack is one :class:`AttackSpec`: its name in every table, its label in figures, its kind (``fixed_budget``: at
given L2 budgets ε, which images keep their label; ``minimum_norm``: per image, how far the attack had to go), the
gradient it follows (``exact``, ``BPDA`` through the filter, or ``none`` for a gradient-free attack) and the function.
The studies apply the gradient view (a BPDA entry is run on :func:`helpers.attacks.adaptive.bpda_model` of the model)
and pass their settings as one mapping; each function takes what it needs from it:

* a fixed-budget function is ``run(model, images, labels, *, budgets, settings) -> RobustnessResult``, with
  ``settings`` holding ``steps``, ``restarts``, ``square_queries``, ``square_restarts`` (default 1), ``targets`` (APGD-T's,
  default :data:`APGD_TARGETS`) and ``seed``
  (chapter 6, :func:`helpers.studies.cascade.cascade`);
* a minimum-norm function is ``run(model, images, labels, targets, *, settings)`` returning per-image ``l2`` and
  ``success`` arrays, with ``settings`` holding ``step``, ``max_steps`` and ``minnorm_steps`` (chapter 5,
  :func:`helpers.studies.scores.attack_distances`).

Registering an attack (:func:`register_attack`) is all it takes for chapter 5 (minimum-norm) or chapter 6
(fixed-budget) to run it, to take it into the per-image worst case or minimum, and to give it its table rows and
its ``l2_<name>`` column; the registry keeps registration order, which is the order of those rows and columns.
This module imports no attack: each function imports its attack when first called, so reading the registry (the
results files' columns) stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("fixed_budget", "minimum_norm")
GRADIENTS = ("exact", "BPDA", "none")


@dataclass(frozen=True)
class AttackSpec:
    """One registered attack (see the module docstring for ``run``'s signature per kind)."""

    name: str
    label: str
    kind: str
    gradient: str
    run: Callable[..., Any]
    family: str = ""  # attacks sharing one algorithm under several losses or gradients (``"APGD"``)
    options: Mapping[str, Any] = field(default_factory=dict)  # what distinguishes the family's members (``loss``)

    @property
    def gradient_free(self) -> bool:
        """Whether the attack reads only the model's outputs (a cross-check for gradient masking)."""
        return self.gradient == "none"


ATTACKS: dict[str, AttackSpec] = {}


def register_attack(spec: AttackSpec, *, replace: bool = False) -> AttackSpec:
    """Add ``spec`` to :data:`ATTACKS` (after the ones already there); returns it."""
    if not isinstance(spec, AttackSpec):
        raise TypeError(f"spec: expected an AttackSpec, got {type(spec).__name__}")
    if not spec.name or not spec.name.strip() or "," in spec.name:
        raise ValueError(f"spec: name {spec.name!r} must be a non-empty name without commas")
    if spec.kind not in KINDS:
        raise ValueError(f"spec: kind {spec.kind!r} of {spec.name!r} is not one of {', '.join(KINDS)}")
    if spec.gradient not in GRADIENTS:
        raise ValueError(f"spec: gradient {spec.gradient!r} of {spec.name!r} is not one of {', '.join(GRADIENTS)}")
    if not callable(spec.run):
        raise TypeError(f"spec: run of {spec.name!r} is not callable")
    if spec.name in ATTACKS and not replace:
        raise ValueError(f"spec: an attack named {spec.name!r} is already registered")
    ATTACKS[spec.name] = spec
    return spec


def unregister_attack(name: str) -> AttackSpec:
    """Remove the attack ``name`` (a test's throw-away attack); returns its spec."""
    if name not in ATTACKS:
        raise ValueError(f"name: no attack named {name!r}; registered: {', '.join(ATTACKS)}")
    return ATTACKS.pop(name)


def attacks_of(kind: str, *, gradient: str | None = None, gradient_free: bool | None = None) -> list[AttackSpec]:
    """The registered attacks of ``kind``, in registration order, optionally of one gradient view or only the
    gradient-free (or only the gradient) ones."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if gradient is not None and gradient not in GRADIENTS:
        raise ValueError(f"gradient: expected one of {', '.join(GRADIENTS)}, got {gradient!r}")
    return [s for s in ATTACKS.values() if s.kind == kind and (gradient is None or s.gradient == gradient)
            and (gradient_free is None or s.gradient_free == gradient_free)]


def attack_names(kind: str, **filters: Any) -> tuple[str, ...]:
    """The names of :func:`attacks_of` (``filters``: ``gradient=``, ``gradient_free=``)."""
    return tuple(s.name for s in attacks_of(kind, **filters))


def exact_twin(spec: AttackSpec) -> str | None:
    """The exact-gradient attack a BPDA entry equals on a model without a filter (same family and options), if any."""
    if spec.gradient != "BPDA":
        return None
    return next((s.name for s in attacks_of(spec.kind, gradient="exact")
                 if s.family == spec.family and dict(s.options) == dict(spec.options)), None)


# --------------------------------------------------------------------------------------------------------------
# The book's attacks
# --------------------------------------------------------------------------------------------------------------


def _paper(model, images, labels, targets, *, settings):
    from helpers.attacks.attack import targeted_attack

    return targeted_attack(model, images, targets, step=settings["step"], max_steps=settings["max_steps"], progress=False)


def _ddn(model, images, labels, targets, *, settings):
    from helpers.attacks.minnorm import ddn_l2

    return ddn_l2(model, images, labels, targets=targets, steps=settings["minnorm_steps"])


def _apgd(model, images, labels, *, budgets, settings, loss):
    from helpers.attacks.apgd import apgd_l2

    return apgd_l2(model, images, labels, budgets=budgets, steps=settings["steps"], restarts=settings["restarts"], loss=loss,
                   seed=settings["seed"])


# APGD-T's target classes: AutoAttack takes 9. On the default models' first two seeds, after APGD-CE and APGD-DLR,
# targets 4 to 9 broke no pair the first three had left (seed 0: 0 of 489 pairs), at 2.5 times the cost.
APGD_TARGETS = 3


def _apgd_targeted(model, images, labels, *, budgets, settings):
    from helpers.attacks.apgd import apgd_targeted_l2

    classes = int(model.output_shape[-1])  # a model with fewer classes has fewer targets to try
    return apgd_targeted_l2(model, images, labels, budgets=budgets, steps=settings["steps"], restarts=settings["restarts"],
                            targets=min(int(settings.get("targets", APGD_TARGETS)), max(classes - 1, 1)), seed=settings["seed"])


def _square(model, images, labels, *, budgets, settings):
    """Square with ``square_restarts`` independent restarts (default 1), each on the pairs every earlier one left correct."""
    import numpy as np

    from helpers.attacks.square import square_l2

    found = square_l2(model, images, labels, budgets=budgets, n_queries=settings["square_queries"], seed=settings["seed"])
    for restart in range(1, int(settings.get("square_restarts", 1))):
        for b in np.flatnonzero(np.asarray(found.budgets) > 0):
            pick = np.flatnonzero(found.correct[b])
            if not len(pick):
                continue
            found.take_breaks(b, pick, square_l2(model, images[pick], labels[pick], budgets=[found.budgets[b]],
                                                 n_queries=settings["square_queries"], seed=settings["seed"] + restart))
    return found


def _apgd_spec(short: str, loss: str, gradient: str) -> AttackSpec:
    def run(model, images, labels, *, budgets, settings):
        return _apgd(model, images, labels, budgets=budgets, settings=settings, loss=loss)

    return AttackSpec(f"APGD-{short} {gradient}", f"APGD ({short} loss, {gradient} gradient)", "fixed_budget", gradient, run,
                      family="APGD", options={"loss": loss})


# Chapter 5: the paper's attack with both gradients, then DDN (the order of min_norm.csv's rows and columns).
register_attack(AttackSpec("paper", "paper's attack, exact gradient", "minimum_norm", "exact", _paper, family="paper"))
register_attack(AttackSpec("paper_bpda", "paper's attack, BPDA", "minimum_norm", "BPDA", _paper, family="paper"))
register_attack(AttackSpec("minimum_norm", "minimum-norm attack (DDN)", "minimum_norm", "exact", _ddn, family="DDN"))
# Chapter 6: APGD with both untargeted losses, exact gradient then BPDA, with targeted APGD (APGD-T) after the exact
# gradient's two, then the gradient-free Square attack. APGD-T has no BPDA twin: through the median's BPDA view it broke
# nothing that the untargeted losses had left (seed 0), and BPDA itself has broken nothing in any build.
for _gradient in ("exact", "BPDA"):
    for _short, _loss in (("CE", "cross_entropy"), ("DLR", "dlr")):
        register_attack(_apgd_spec(_short, _loss, _gradient))
    if _gradient == "exact":
        register_attack(AttackSpec("APGD-T exact", f"APGD-T (targeted DLR loss, {APGD_TARGETS} targets, exact gradient)",
                                   "fixed_budget", "exact", _apgd_targeted, family="APGD", options={"loss": "dlr_targeted"}))
register_attack(AttackSpec("Square", "Square (gradient-free)", "fixed_budget", "none", _square, family="Square"))

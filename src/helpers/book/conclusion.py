"""Chapter 9's reading of the results files: the counts per verdict word, the claim keys, and the sentences it glues.

Every function takes the rows of one or two results files (as :mod:`helpers.studies.results` reads them) and returns
the chapter's glue values by name; the chapter only glues them. The thresholds that switch a sentence are constants
of :mod:`helpers.studies.verdicts`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from helpers.book.notebook import sentence
from helpers.studies.verdicts import RMS_THRESHOLD, STRONG_IMAGES, TRANSFER_FOOLS_SHARE, TRANSFER_HELP_MARGIN, VERDICTS

# The paper's own claims; C6 and C7 go beyond it.
BEYOND_PAPER = ("C6", "C7")
PAPER_MODEL = "gaussian:1.5"
# How a count of claims with each verdict reads: (one, several).
PHRASES = {"confirmed": ("is confirmed", "are confirmed"), "partly": ("holds in part", "hold in part"),
           "refuted": ("is contradicted by our measurements", "are contradicted by our measurements"),
           "inconclusive": ("cannot be decided by this run", "cannot be decided by this run")}
# What C6's and C7's verdicts mean, in one sentence each.
CLAIM_SENTENCES = {
    "C6": {"confirmed": "The blur keeps a measurable advantage even against an attacker who knows it.",
           "partly": "The blur keeps an advantage against an attacker who knows it, but how large is not established.",
           "refuted": "Against an attacker who knows it, the blur buys no robustness.",
           "inconclusive": "This run cannot tell whether the blur helps against an attacker who knows it."},
    "C7": {"confirmed": "At the same clean accuracy the blur keeps up with the defences the field trusts.",
           "partly": "The blur keeps up with the trusted defences in part only.",
           "refuted": "The trusted defences buy clearly more robustness than the blur at the same clean accuracy: use them "
                      "instead.",
           "inconclusive": "This run cannot tell whether the blur keeps up with the defences the field trusts."},
}
FINDING_WORDS = {"C4": "Gaussian minus median accuracy {value}", "C5": "score of σ = 1.5 over its best rival {value} on {measure}",
                 "C6": "the most favourable blur's gain in {measure} {value}",
                 "C7": "the blur minus the trusted defence in {measure} {value}"}
MEASURES = {"paper": "the paper's attack", "strongest": "the strongest attack"}


def claim_key(claim: Any) -> str:
    """``"C3"`` from ``"C3: Training and classifying …"``."""
    return str(claim).split(":")[0]


def by_claim(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per claim, indexed by its key: C3 and C5 have a row per measure, and the strongest measure (listed
    last) is the one a claim stands on."""
    verdicts = pd.DataFrame(rows)
    verdicts["key"] = verdicts["claim"].map(claim_key)
    return verdicts.drop_duplicates("key", keep="last").set_index("key")


def finding(row: Mapping[str, Any]) -> str:
    """The number a verdict stands on, in a few words: the effect with its interval, or the evidence's first clause."""
    key = claim_key(row["claim"])
    try:
        effect, low, high = (float(row[k]) for k in ("effect", "low", "high"))
    except (TypeError, ValueError):
        effect = low = high = float("nan")
    evidence = str(row["evidence"])
    if key == "C3" and ": " in evidence:  # two effects decide it: accuracy and ‖δ‖₂
        return evidence.split(": ", 1)[1].replace("-", "−") + " against no filter"
    if all(pd.notna(v) for v in (effect, low, high)):
        value = f"{effect:+.1%} [{low:+.1%}, {high:+.1%}]".replace("-", "−")
        measure = MEASURES.get(str(row["measure"]), str(row["measure"]))
        return FINDING_WORDS.get(key, "{value} ({measure})").format(value=value, measure=measure)
    return evidence.split(" — ")[0].split("; ")[0].strip()


def verdict_glue(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The verdicts at a glance (``verdicts.csv``'s rows): the count per verdict word, each claim's verdict, evidence,
    rule and finding (``end_C1``, …, ``find_C1``, …), the keys per verdict, and the summary sentences."""
    claims = by_claim(rows)
    counts = claims["verdict"].value_counts()

    def keys_with(verdict: str) -> str:
        return ", ".join(k for k, v in claims["verdict"].items() if v == verdict) or "none"

    out: dict[str, Any] = {"n_claims": len(claims)} | {f"n_{v}": int(counts.get(v, 0)) for v in VERDICTS}
    for key, row in claims.iterrows():
        out |= {f"end_{key}": row["verdict"], f"end_{key}_evidence": sentence(row["evidence"]), f"end_{key}_rule": row["rule"],
                f"end_{key}_proves": _text(row.get("proves")), f"find_{key}": finding(row)}
    out |= {f"{v}_keys": keys_with(v) for v in ("refuted", "confirmed", "partly", "inconclusive")}
    out["paper_refuted_keys"] = ", ".join(k for k in claims.index if k not in BEYOND_PAPER
                                          and claims.loc[k, "verdict"] == "refuted") or "none"
    parts = [f"{int(counts.get(v, 0))} {PHRASES[v][int(counts.get(v, 0)) != 1]} ({keys_with(v)})" for v in VERDICTS]
    out["verdict_summary"] = f"Of the {len(claims)} claims, " + ", ".join(parts[:-1]) + " and " + parts[-1] + "."
    keys = pd.Series([claim_key(r["claim"]) for r in rows])
    out["twice_sentence"] = twice_sentence([k for k, n in keys.value_counts().sort_index().items() if n > 1])
    for key in BEYOND_PAPER:
        out[f"{key.lower()}_sentence"] = CLAIM_SENTENCES[key][claims.loc[key, "verdict"]]
    return out


def _text(value: Any) -> str:
    """A text cell of ``verdicts.csv`` (empty when missing)."""
    return "" if value is None or (isinstance(value, float) and not np.isfinite(value)) else str(value)


def twice_sentence(twice: Sequence[str]) -> str:
    """The note on the claims judged on two measures of ‖δ‖₂ (empty when there are none)."""
    if not twice:
        return ""
    one = len(twice) == 1
    return (f"{' and '.join(twice)} {'is' if one else 'are'} judged on two measures of ‖δ‖₂ (the paper's attack and the "
            f"strongest attack) and so {'has' if one else 'have'} two rows in the table; each counts once, with the "
            "verdict on the strongest measure, the one that finds the smallest perturbation and so judges ‖δ‖₂ best.")


def attack_glue(attack_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The attack section (``attack.csv``): the study model's success, distance and RMS change, and how many of the
    paper's architectures ran."""
    attack = pd.DataFrame(attack_rows).set_index("model")
    cnn = attack.iloc[0]
    return {"cnn_success": float(cnn["success_rate"]) * 100, "cnn_n": int(float(cnn["n_attacked"])),
            "cnn_l2": float(cnn["median_l2"]), "cnn_rms": float(cnn["median_rms"]),
            "cnn_rms255": float(cnn["median_rms"]) * 255, "rms_limit255": RMS_THRESHOLD * 255, "n_arch": len(attack) - 1,
            "study_model": attack.index[0], "study_data": cnn["dataset"]}


def defence_glue(score_rows: Sequence[Mapping[str, Any]], paper_claims: Mapping[str, Any]) -> dict[str, Any]:
    """The defence measured the paper's way (``scores.csv``, ``paper_claims.json``): no filter against σ = 1.5 (or the
    best Gaussian when the grid lacks it), and the best filter by the paper's score."""
    scores = pd.DataFrame(score_rows).set_index("defence")
    paper_spec = PAPER_MODEL if PAPER_MODEL in scores.index else paper_claims.get("best_gaussian") or "none"
    none, paper = scores.loc["none"], scores.loc[paper_spec]
    scored = scores["score"].astype(float).dropna()  # empty when no attack succeeded
    return {"paper_label": paper["label"], "acc_none": float(none["clean_accuracy"]) * 100,
            "acc_paper": float(paper["clean_accuracy"]) * 100, "l2_none": float(none["mean_l2"]),
            "l2_paper": float(paper["mean_l2"]),
            "best_label": scores.loc[scored.idxmax(), "label"] if len(scored) else "none (no attack reached its target)",
            "n_filters": len(scores)}


def verdict_curves(adaptive: Mapping[str, Any], robustness_rows: Sequence[Mapping[str, Any]]) -> tuple[pd.DataFrame, float]:
    """The worst-case curves the C6 verdict stands on (every attack on every digit, pooled over seeds) and the
    reference budget (the nearest one the strong attacks ran)."""
    curves = pd.DataFrame(robustness_rows)
    curves[["budget", "accuracy"]] = curves[["budget", "accuracy"]].astype(float)
    eps = float(adaptive["reference_budget"])
    pooled = "all" if (curves["seed"] == "all").any() else curves["seed"].iloc[0]  # over every training seed
    on_verdict = curves[(curves["attack"] == "worst") & (curves["seed"] == pooled) & (curves["images"] == STRONG_IMAGES)
                        & (curves["budget"] > 0)]
    if len(on_verdict) and not (on_verdict["budget"] == eps).any():
        eps = float(on_verdict.loc[(on_verdict["budget"] - eps).abs().idxmin(), "budget"])
    return on_verdict, eps


def adaptive_glue(adaptive: Mapping[str, Any], robustness_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Against an attacker who knows the filter (``adaptive_claims.json``, ``robustness.csv``): the attack C6 stands
    on, the undefended and the most robust defended model at the reference budget, and the paper's σ = 1.5 against
    no filter on the robust share the verdict averages."""
    on_verdict, eps = verdict_curves(adaptive, robustness_rows)
    worst = on_verdict[on_verdict["budget"] == eps].set_index("model")
    defended = [m for m in worst.index if m != "none"]
    best = max(defended, key=lambda m: worst.loc[m, "accuracy"]) if defended else "none"
    out = {"ref_attack": "the worst case of every attack we have (PGD, APGD with two losses and both gradients, targeted "
                         "APGD, and the gradient-free Square attack) on every digit",
           "ref_eps": eps, "ref_none": worst.loc["none", "accuracy"] * 100, "ref_best_label": worst.loc[best, "label"],
           "ref_best": worst.loc[best, "accuracy"] * 100, "paper_sigma_sentence": ""}
    budgets = [float(e) for e in re.findall(r"[\d.]+", str(adaptive["C6"].get("measure", "")).partition("{")[2])]
    on_statistic = on_verdict[on_verdict["budget"].isin(budgets)] if budgets else on_verdict
    share = on_statistic.groupby("model")["accuracy"].mean()  # the robust share: accuracy averaged over the budgets
    if PAPER_MODEL in share.index and "none" in share.index:
        paper_share, none_share = float(share[PAPER_MODEL]), float(share["none"])
        label = on_verdict.loc[on_verdict["model"] == PAPER_MODEL, "label"].iloc[0]
        others = share.drop(["none", PAPER_MODEL])
        most = others.idxmax() if len(others) and others.max() > max(paper_share, none_share) else None
        # When another filter keeps more than both, the sentence names it first: the two facts belong together.
        opening = (f"On the attack the C6 verdict stands on, the paper's own choice, {label}, keeps a robust share of "
                   f"{paper_share:.0%} of the digits against {none_share:.0%} without any filter: " if most is None else
                   f"On the attack the C6 verdict stands on, the most robust filter, "
                   f"{on_verdict.loc[on_verdict['model'] == most, 'label'].iloc[0]}, keeps a robust share of {others[most]:.0%} "
                   f"of the digits against {none_share:.0%} without any filter, but the paper's own choice, {label}, keeps "
                   f"{paper_share:.0%}: ")
        out["paper_sigma_sentence"] = (
            opening
            + ("against an attacker who knows it, the blur the paper recommends leaves the model less robust, not more."
               if paper_share < none_share else "no more robust than no defence at all." if paper_share == none_share
               else "somewhat more robust than no defence (whether that gain counts is the C6 verdict)."))
    return out


def transfer_glue(transfer_rows: Sequence[Mapping[str, Any]], *, fools_share: float = TRANSFER_FOOLS_SHARE,
                  help_margin: float = TRANSFER_HELP_MARGIN) -> dict[str, Any]:
    """The paper's implicit threat (``transfer_controls.csv``): how many boundary images still fool a defended model or
    are restored, against the controls; and, past the boundary, whether the blur restores more than ``help_margin``
    above the best control."""
    transfer = pd.DataFrame(transfer_rows)
    boundary = transfer[transfer["images"].str.startswith("boundary")]
    on_defended = boundary[boundary["role"] == "defended"].groupby("receiver")[["still_target", "correct"]].mean()
    still_target = on_defended["still_target"].astype(float).max() if len(on_defended) else float("nan")
    controls = boundary[boundary["role"] != "defended"].groupby("role")["correct"].mean()
    past = transfer[~transfer["images"].str.startswith("boundary")]
    past_defended = past[past["role"] == "defended"].groupby("receiver")["correct"].mean()
    past_controls = past[past["role"] != "defended"].groupby("role")["correct"].mean()
    helps_past = len(past_defended) and len(past_controls) and past_defended.max() - past_controls.max() > help_margin
    past_sentence = "" if not len(past_defended) else (
        f"With images pushed well past the boundary, the defended models restore up to {past_defended.max():.0%} against "
        f"{past_controls.max():.0%} for the controls: " + ("there the blur does help against an oblivious attacker."
                                                           if helps_past else "even there the blur does no more than the controls."))
    return {"transfer_correct": on_defended["correct"].astype(float).max() * 100 if len(on_defended) else float("nan"),
            "transfer_control": controls.max() * 100 if len(controls) else float("nan"),
            "transfer_past_sentence": past_sentence, "transfer_target": still_target * 100,
            "transfer_sentence": ("Most of them no longer fool a blurred model" if still_target < fools_share
                                  else "Many of them fool the blurred models too")}


def alternatives_glue(alternative_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Beside the trusted defences (``alternatives.csv``), at the smallest positive budget and pooled over seeds: the
    most robust blur, adversarial training, and randomized smoothing's best certified accuracy with its noise level."""
    alternatives = pd.DataFrame(alternative_rows)
    alternatives[["budget", "accuracy", "clean_accuracy"]] = alternatives[["budget", "accuracy", "clean_accuracy"]].astype(float)
    every_seed = "all" if (alternatives["seed"] == "all").any() else alternatives["seed"].iloc[0]  # pooled over seeds
    top = alternatives[(alternatives["seed"] == every_seed)
                       & (alternatives["budget"] == alternatives.loc[alternatives["budget"] > 0, "budget"].min())]
    certified = top[top["measure"] == "certified"].sort_values("accuracy").tail(1)
    adversarial, blur = top[top["method"] == "adversarial training"], top[top["method"] == "blur"]
    return {"alt_eps": float(top["budget"].iloc[0]) if len(top) else float("nan"),
            "alt_certified": float(certified["accuracy"].iloc[0]) * 100 if len(certified) else float("nan"),
            "alt_certified_label": str(certified["parameter"].iloc[0]).replace("noise:", "σ = ") if len(certified) else "—",
            "alt_at": float(adversarial["accuracy"].iloc[0]) * 100 if len(adversarial) else float("nan"),
            "alt_blur": float(blur["accuracy"].max()) * 100 if len(blur) else float("nan")}


def sanity_glue(sanity_rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many of the adaptive evaluation's sanity checks passed (``sanity.csv``), of how many."""
    sanity = pd.DataFrame(sanity_rows)
    return {"sanity_passed": int(sanity["passed"].sum()), "sanity_total": len(sanity)}

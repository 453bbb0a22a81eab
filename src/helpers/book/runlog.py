"""The book runner's log (``helpers.studies.results.RUN_LOG``): wall time and peak memory of each notebook, per profile."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd


def run_log_rows(log: Mapping[str, Any], *, notebooks: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows (profile, notebook, seconds, peak MiB) from the run log: the current profile's ``notebooks`` and,
    when the runner keeps them, earlier profiles' under ``by_profile``; only the names in ``notebooks`` if given
    (a log can keep entries of notebooks that were renamed since)."""
    if not isinstance(log, Mapping):
        raise TypeError(f"log: expected the run log's mapping, got {type(log).__name__}")
    if isinstance(notebooks, str):
        raise TypeError(f"notebooks: expected a list of notebook names, got the string {notebooks!r}")
    profiles: dict[str, Mapping[str, Any]] = dict(log.get("by_profile", {}))
    if "profile" in log:
        profiles[log["profile"]] = log.get("notebooks", {})
    rows = []
    for profile, entries in profiles.items():
        for name, entry in sorted(entries.items()):
            if notebooks is not None and name not in notebooks:
                continue
            rows.append({"profile": profile, "notebook": name, "seconds": entry.get("seconds"), "peak_mib": entry.get("peak_mib")})
    return rows


def run_log_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per notebook, a wall-time and a peak-memory column per profile (``"wall s (quick)"``, …);
    an empty frame when there are no rows."""
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(list(rows)).pivot_table(index="notebook", columns="profile", values=["seconds", "peak_mib"])
    table.columns = [f"{'wall s' if what == 'seconds' else 'peak MiB'} ({profile})" for what, profile in table.columns]
    return table


def previous_runs(*, notebooks: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """:func:`run_log_rows` of the book runner's log (:data:`helpers.studies.results.RUN_LOG`); none before the first run."""
    from helpers.studies.results import RUN_LOG

    try:
        log = RUN_LOG.read()
    except FileNotFoundError:
        return []
    return run_log_rows(log, notebooks=notebooks)

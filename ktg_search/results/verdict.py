"""What a search's rows say in a few lines: the top graphs, and whether searching paid.

One place for the lines that the search's closing summary, `ktg status` and the report
print, so that the three never disagree. Rows are the results table's rows as dicts
(`ResultsBook.rows`, or a DataFrame's records).
"""
from __future__ import annotations

import math
from typing import Any, Iterable


def _score(row: dict[str, Any]) -> float | None:
    v = row.get("objective")
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and \
        math.isfinite(v) else None


def _baseline(row: dict[str, Any]) -> str:
    b = row.get("baseline")
    return b if isinstance(b, str) else ""


def ranked(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with a finite objective, best first; duplicates left out (they repeat their
    original's numbers)."""
    out = [r for r in rows if r.get("status") != "duplicate" and _score(r) is not None]
    return sorted(out, key=_score, reverse=True)


def top_lines(rows: Iterable[dict[str, Any]], rule: str, top: int = 5) -> list[str]:
    """'top N graphs by objective = RULE:' and one line per graph (a baseline named)."""
    best = ranked(rows)[:top]
    if not best or top <= 0:
        return []
    lines = [f"top {len(best)} graphs by objective = {rule}:"]
    for r in best:
        name = f"  baseline {_baseline(r)}" if _baseline(r) else ""
        lines.append(f"  {r['trial_id']}  objective {_score(r):.3f}  epoch "
                     f"{r.get('best_epoch', 0)}/{r.get('epochs', 0)}  "
                     f"{r.get('status', ''):<9} key {r.get('graph_key', '')}{name}")
    return lines


def searching_paid(rows: Iterable[dict[str, Any]]) -> str | None:
    """One sentence: the best searched graph against the best baseline, the difference,
    and how many searched trials beat every baseline. None when the run has no baseline
    (a search with `baselines=false`, or one written before baselines)."""
    rows = list(rows)
    bases = [r for r in rows if _baseline(r)]
    if not bases:
        return None
    searched = [r for r in rows if not _baseline(r)]
    scored_bases = ranked(bases)
    scored = ranked(searched)
    if not scored_bases or not scored:
        waiting = "no baseline" if not scored_bases else "no searched trial"
        return f"Did searching pay? Not known yet: {waiting} has an objective."
    b, s = scored_bases[0], scored[0]
    diff = _score(s) - _score(b)
    beat = sum(1 for r in scored if _score(r) > _score(b))
    if abs(diff) < 5e-4:  # equal at the digits shown: no winner to name
        verdict, verb = "Searching did not pay", "ties"
    else:
        verdict, verb = ("Searching paid", "beats") if diff > 0 else \
            ("Searching did not pay", "trails")
    by = "" if verb == "ties" else f" by {abs(diff):.3f}"  # the verb gives the sign
    return (f"{verdict}: the best searched graph ({s['trial_id']}, objective "
            f"{_score(s):.3f}) {verb} the best baseline ({_baseline(b)}, "
            f"{_score(b):.3f}){by}; {beat} of {len(searched)} searched "
            f"trials beat every baseline.")

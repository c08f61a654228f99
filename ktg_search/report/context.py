"""What every section is given: `ReportContext` (the run, the folder, the options) and the
values several sections derive from it.

A section is a function `(ctx) -> Part` (sections.py). It reads the run and the options
from `ctx` and writes nothing into it: no section sees what another one computed. Two
inputs are costly and wanted by several sections, the data set and the best graph's
restored trainer; `ctx.data()` and `ctx.best_trainer()` compute them on first use and
return the same object after that. Both are functions of the run and the options alone
(the context belongs to one report of one run), so which section asks first changes
nothing but the time it takes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .reevaluation import best_restorable
from .run import Missing, RunView, load_run_data
from .tables import is_digits


@dataclass(frozen=True)
class Options:
    """The reader's settings (`ktg report` flags)."""
    top: int = 10
    reeval_top: int = 3
    reeval_samples: int = 10_000
    reeval: bool = True
    device: str = "auto"
    progress: bool = True
    strict: bool = False  # re-raise a part's unexpected error (tests) instead of a note
    allow_external_storage: bool = False  # open a study run.json places outside the run


@dataclass(frozen=True, eq=False)
class ReportContext:
    """The inputs of every section: `run` (read once), `folder` (where pictures go:
    the report folder being built) and `opts`."""
    run: RunView
    folder: Path
    opts: Options
    # values computed once per report (see the module docstring); never a section's output
    _memo: dict = field(default_factory=dict, repr=False)

    def _once(self, key: str, compute: Callable[[], Any]) -> Any:
        # a failure is not kept: asking again tries again, as a fresh report would
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def data(self):
        """The run's data set (`run.load_run_data`), loaded on first use."""
        return self._once("data", lambda: load_run_data(self.run))

    def best_trainer(self):
        """(rank, results row, trainer) of the best of the top graphs whose checkpoint
        restores, with its best epoch's weights (`reevaluation.best_restorable`);
        restored on first use, so the sample grid and the t-SNE show the same weights.
        Missing when no top graph has a usable checkpoint."""
        return self._once("best_trainer",
                          lambda: best_restorable(self.run, self.opts.top, self.data))

    def top(self):
        """The first `opts.top` ranked trials."""
        return self.run.ranked.head(self.opts.top)

    def gates(self) -> list[str]:
        """The gates the search chose from, in its config's order."""
        return [str(g) for g in self.run.cfg.get("gates", [])]

    def digits(self) -> int:
        """Decimals that tell the top trials' IS values apart (`tables.is_digits`)."""
        top = self.top()
        return is_digits(list(top.get("objective", [])) +
                         [v for c in top.columns if c.startswith("is_best_g")
                          for v in top[c]])


class NoTrials(Missing):
    """Nothing is ranked yet. `why` is the short reason, `detail` the rest: the report
    says both at the first part that needs trials and only `why` after that."""

    def __init__(self, why: str, detail: str) -> None:
        super().__init__(why + detail)
        self.why, self.detail = why, detail


def need_trials(run: RunView) -> None:
    """NoTrials (with the reason) when nothing is ranked."""
    if not run.ranked.empty:
        return
    df = run.results
    if df.empty:
        why = "no finished trial yet"
        more = ": the search has just started; run `ktg report` again later"
    else:
        counts = df["status"].value_counts().to_dict() if "status" in df.columns \
            else {}
        why = "no ranked trial yet"
        more = (f": none of the {len(df)} finished trial(s) has an objective of its "
                f"own (" + ", ".join(f"{v} {k}" for k, v in counts.items()) + ")")
    raise NoTrials(why, more)


def graph_of(row):
    """The Graph of one results row; Missing when the row records none."""
    from ..graph import Graph
    if not row.get("graph"):
        raise Missing(f"trial {row['trial_id']} has no graph recorded")
    return Graph.from_json(row["graph"])

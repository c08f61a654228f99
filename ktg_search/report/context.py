"""What every section is given and how a section is made: `Options` (the reader's
settings), the `section` decorator, and the small values several sections derive from
(run, options): the top trials, their IS decimals, the searched gates, `need_trials`.

A section is a function `(run: RunView, opts: Options) -> Part` (sections.py lists
them). It reads nothing else and writes nothing that another section reads: the costly
inputs several sections share (the data set, the best graph's restored trainer) are
cached values of the run view (`RunView.data()`, `RunView.best_trainer(top)`), computed
on first use and the same object after that, so which section asks first changes nothing
but the time it takes. Pictures travel inside the Part (`Part.file`), and `build_report`
writes them; a section touches no folder.
"""
from __future__ import annotations

import functools
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Callable

from .render import Part
from .run import Missing, RunView
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
    baselines: str | None = None  # a `ktg compare` folder (sections_baselines.py)


SectionFn = Callable[[RunView, Options], Part]


def section(key: str, title: str) -> Callable[[Callable[[RunView, Options, Part], None]],
                                              SectionFn]:
    """Turn `body(run, opts, part)`, which fills a part, into a section
    `(run, opts) -> Part` with `.key` and `.title`.

    The body is handed the part rather than returning one so that what it wrote before
    finding an input missing stays: `Missing` ends the part with its message as a note
    (`NoTrials` with its short form kept for `build_parts`, which says the details once);
    any other error becomes a note too, or is re-raised with `opts.strict`, so one broken
    section never costs the whole report."""
    def wrap(body: Callable[[RunView, Options, Part], None]) -> SectionFn:
        @functools.wraps(body)
        def run_section(run: RunView, opts: Options) -> Part:
            p = Part(key, title)
            try:
                body(run, opts, p)
            except NoTrials as e:
                p.note(e.why + e.detail, short=e.why)
            except Missing as e:
                p.note(str(e))
            except Exception as e:  # one broken part must not cost the whole report
                if opts.strict:
                    raise
                print(f"ktg report: warning: part {title!r} failed: {type(e).__name__}: "
                      f"{e} (KTG_DEBUG=1 shows where)", file=sys.stderr)
                if os.environ.get("KTG_DEBUG"):
                    traceback.print_exc(file=sys.stderr)
                p.note(f"this part could not be drawn: {type(e).__name__}: {e}")
            return p
        run_section.key, run_section.title = key, title  # type: ignore[attr-defined]
        return run_section
    return wrap


def top_trials(run: RunView, opts: Options):
    """The first `opts.top` ranked trials."""
    return run.ranked.head(opts.top)


def searched_gates(run: RunView) -> list[str]:
    """The gates the search chose from, in its config's order."""
    return list(run.cfg.space.gates)


def top_digits(run: RunView, opts: Options) -> int:
    """Decimals that tell the top trials' IS values apart (`tables.is_digits`)."""
    top = top_trials(run, opts)
    return is_digits(list(top.get("objective", [])) +
                     [v for c in top.columns if c.startswith("is_best_g") for v in top[c]])


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
    from ..method.graph import Graph
    if not row.get("graph"):
        raise Missing(f"trial {row['trial_id']} has no graph recorded")
    return Graph.from_json(row["graph"])

"""The report's sections, in report order: one table of (key, title, function).

The table is the one list of sections: `ktg report --only` takes its keys as choices and
`build_report` runs its functions in its order. A section is a function
`(run: RunView, opts: Options) -> Part` made with `context.section`, which also turns a
missing input or a failure into a note; a new section is one such function in a
`sections_*.py` module plus one row here.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from . import (sections_asha, sections_baselines, sections_graphs, sections_matters,
               sections_ranking, sections_samples)
from .context import Options
from .render import Part
from .run import RunView


class Section(NamedTuple):
    key: str                                      # --only's name for it, the HTML anchor
    title: str                                    # its heading
    fn: Callable[[RunView, Options], Part]        # makes the part
    asked: Callable[[Options], bool]              # in the report without --only?


def _row(fn, asked: Callable[[Options], bool] = lambda opts: True) -> Section:
    return Section(fn.key, fn.title, fn, asked)


SECTIONS: tuple[Section, ...] = (
    _row(sections_ranking.ranking),
    _row(sections_ranking.reevaluation),
    # only with --baselines: without a compare folder there is nothing to set against
    _row(sections_baselines.baselines, lambda opts: opts.baselines is not None),
    _row(sections_graphs.graphs),
    _row(sections_graphs.curves),
    _row(sections_graphs.distributions),
    _row(sections_matters.gate_share),
    _row(sections_matters.importance),
    _row(sections_asha.asha),
    _row(sections_asha.early_stops),
    _row(sections_samples.samples),
    _row(sections_samples.tsne),
)
SECTION_KEYS = [s.key for s in SECTIONS]


def build_parts(run: RunView, opts: Options, only: list[str] | None = None) -> list[Part]:
    """Every section's part (or those whose key is in `only`), in table order.

    A reason given in full once ("no finished trial yet: the search has just started
    ...") is said short in the parts after it, pointing up: the parts themselves are
    independent, this is the one thing the runner changes in them."""
    parts = [s.fn(run, opts) for s in SECTIONS
             if (s.asked(opts) if only is None else s.key in only)]
    said: set[str] = set()
    for p in parts:
        for i, b in enumerate(p.blocks):
            if b[0] == "note" and len(b) == 3:
                short = b[2]
                p.blocks[i] = ("note", short + " (see above)" if said else b[1])
                said.add(short)
    return parts

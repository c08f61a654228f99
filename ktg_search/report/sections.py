"""The report's sections, in report order: one table of (key, title, function).

The table is the one list of sections: `ktg report --only` takes its keys as choices and
`build_report` runs its functions in its order. A section function takes the
`ReportContext` and the `Part` it fills (`fn(ctx, part)`); given the part rather than
returning one, what it wrote before finding an input missing stays, followed by the note.
A new section is one function in a `sections_*.py` module plus one row here.

`build_parts` runs them: a section that raises `Missing` ends with the message as a
note; any other error becomes a note too (or is re-raised with `strict`), so one
broken section never costs the whole report.
"""
from __future__ import annotations

import os
import sys
import traceback
from typing import Callable, NamedTuple

from . import sections_asha, sections_graphs, sections_matters, sections_ranking, \
    sections_samples
from .context import NoTrials, ReportContext
from .render import Part
from .run import Missing


class Section(NamedTuple):
    key: str                                      # --only's name for it, the HTML anchor
    title: str                                    # its heading
    fn: Callable[[ReportContext, Part], None]     # fills the part


SECTIONS: tuple[Section, ...] = (
    Section("ranking", "Ranked graphs", sections_ranking.ranking),
    Section("reevaluation", "Re-evaluation with many more samples",
            sections_ranking.reevaluation),
    Section("graphs", "The top graphs", sections_graphs.graphs),
    Section("curves", "IS curves of the top graphs", sections_graphs.curves),
    Section("distributions", "Distributions of the objective",
            sections_graphs.distributions),
    Section("gates", "What matters: gate shares at the top", sections_matters.gate_share),
    Section("importance", "What matters: parameter importances (Optuna)",
            sections_matters.importance),
    Section("asha", "ASHA at a glance", sections_asha.asha),
    Section("early-stops", "Do early stops predict the final rank?",
            sections_asha.early_stops),
    Section("samples", "Samples of the best graph (same z)", sections_samples.samples),
    Section("tsne", "t-SNE of the best graph's samples", sections_samples.tsne),
)
SECTION_KEYS = [s.key for s in SECTIONS]


def build_parts(ctx: ReportContext, only: list[str] | None = None) -> list[Part]:
    """Run every section (or those whose key is in `only`), in table order."""
    parts = []
    said_why = False  # "no trials yet" is explained once, then referred to
    for key, title, fn in SECTIONS:
        if only is not None and key not in only:
            continue
        p = Part(key, title)
        try:
            fn(ctx, p)
        except NoTrials as e:
            p.note(e.why + (" (see above)" if said_why else e.detail))
            said_why = True
        except Missing as e:
            p.note(str(e))
        except Exception as e:  # one broken part must not cost the whole report
            if ctx.opts.strict:
                raise
            print(f"ktg report: warning: part {title!r} failed: {type(e).__name__}: {e}"
                  f" (KTG_DEBUG=1 shows where)", file=sys.stderr)
            if os.environ.get("KTG_DEBUG"):
                traceback.print_exc(file=sys.stderr)
            p.note(f"this part could not be drawn: {type(e).__name__}: {e}")
        parts.append(p)
    return parts

"""Ranked graph reports: `ktg report RUN` turns a search into pictures people read.

    RUN/run.json, results.parquet, history.parquet, checkpoints, the Optuna study
      --> build_report() --> RUN/report/{report.html, report.md, *.png}
                          --> RUN/reevaluation.parquet (top graphs re-scored, reused later)

The report answers: which graphs won and by how much (ranked table, re-evaluation with many
more samples), how sure we are (the number of trials every part rests on), which edges and
gates matter (gate shares among the best trials, Optuna's parameter importances), what
the search did (ASHA rungs, IS curves) and what the winners' images look like (a sample
grid with one z for every generator, a t-SNE).

Every part is built on its own: a part whose inputs are missing (no finished trial yet,
no checkpoint, a study too small for Optuna's importance evaluator) becomes a note, and
the rest of the report still renders. The folder is built in a temporary directory beside
`--out` and renamed over it, so a reader never sees half a report; the folder it replaces
must carry the report's marker file (outputs.py: ktg never replaces what it did not make).
Checkpoints and tables of the run are read as data (safeload.py): a refused or broken
checkpoint becomes a note naming the file.

Edge `s -> t` (DESIGN.md): the loss compares s and t, its gradient flows into t; the
pictures draw the arrow from s to t, and `gate_s_t` columns read the same way.

The modules, each depending only on those above it:
    tables.py          pure tables: ranking, gate shares, ASHA rungs, rank correlation
    render.py          the document (`Part`) and its Markdown / HTML renderings
    figures.py         matplotlib helpers, the graph drawing, curves, boxes, image grids
    run.py             `RunView` (the run, read once; its cached data set and best
                       restored trainer), `restore_best` and `Missing`
    reevaluation.py    re-scoring the top checkpoints, and `reevaluation.parquet`
    baselines.py       a `ktg compare` folder read back, its recipe against the search's
    context.py         `Options`, the `section` decorator, values sections derive
    sections_*.py      the sections `(run, options) -> Part`, grouped by question
    sections.py        the table of sections (key, title, function) and their runner
    build.py           `build_report` (the command is commands/report.py)
Code outside the report imports from `ktg_search.report` only, never from its modules.
"""
from __future__ import annotations

from .build import REPORT_DIR, build_report
from .baselines import Baselines, read_baselines, recipe_differences
from .context import Options, section
from .figures import GATE_COLOURS, draw_graph, gate_colour, graph_figsize
from .reevaluation import REEVAL_FILE, REEVAL_SEED, read_reevaluations, reevaluate
from .render import Part, render_html, render_markdown
from .run import Missing, RunView, open_run, restore_best
from .sections import SECTION_KEYS, SECTIONS, Section
from .sections_samples import SAMPLE_SEED, TSNE_PER_SOURCE
from .tables import (TOP_FRAC, asha_rungs, edge_columns, edge_label, gate_shares, is_digits,
                     ranked_trials, rung_rank_correlation, rung_times, spearman)

__all__ = [
    "Baselines", "GATE_COLOURS", "Missing", "Options", "Part", "REEVAL_FILE",
    "REEVAL_SEED", "REPORT_DIR", "RunView", "SAMPLE_SEED", "SECTIONS", "SECTION_KEYS",
    "Section", "TOP_FRAC", "TSNE_PER_SOURCE", "asha_rungs", "build_report", "draw_graph",
    "edge_columns", "edge_label", "gate_colour", "gate_shares", "graph_figsize", "is_digits", "open_run", "ranked_trials",
    "read_baselines", "read_reevaluations", "recipe_differences", "reevaluate",
    "render_html", "render_markdown", "restore_best", "rung_rank_correlation", "rung_times",
    "section", "spearman",
]

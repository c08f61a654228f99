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
"""
from __future__ import annotations

import html
import io
import json
import math
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import KtgError
from .results import atomic_write_bytes, latest_checkpoint, load_history, load_results

REPORT_DIR = "report"
REEVAL_FILE = "reevaluation.parquet"
REEVAL_SEED = 777_000     # re-evaluation z: not the search's EVAL_SEED, so fresh samples
SAMPLE_SEED = 4242        # the z of the sample grid and the t-SNE (one z for every G)
TOP_FRAC = 0.10           # "the top 10% of trials" of the gate-share heat map
TSNE_PER_SOURCE = 150     # points per generator (and of real images) in the t-SNE

# Gate colours: the paper's Fig. 8 draws through in black and positive linear in red.
GATE_COLOURS = {"through": "#222222", "linear_up": "#d62728", "linear_down": "#1f77b4",
                "correct": "#2ca02c", "cutoff": "#bbbbbb"}
_EXTRA_COLOURS = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#ff7f0e"]


def gate_colour(gate: str) -> str:
    if gate in GATE_COLOURS:
        return GATE_COLOURS[gate]
    return _EXTRA_COLOURS[sum(map(ord, gate)) % len(_EXTRA_COLOURS)]


# ---- tables the report is made of (pure functions, tested) -------------------------------
def _numeric(s):
    import pandas as pd
    return pd.to_numeric(s, errors="coerce")


def ranked_trials(df):
    """The trials that take part in the ranking, best first.

    The ranking rule: `objective` = the best IS reached at any epoch (not the last value).
    Duplicates (the same graph up to renumbering, not retrained) are left out, they point
    at their originals; trials without an objective (skipped, failed before the first
    evaluation) are left out. Ties keep the table's order (stable sort)."""
    if df.empty or "objective" not in df.columns:
        return df.iloc[0:0].copy()
    df = df.copy()
    df["objective"] = _numeric(df["objective"])
    keep = df["objective"].notna()
    if "status" in df.columns:
        keep &= df["status"] != "duplicate"
    return df[keep].sort_values("objective", ascending=False, kind="stable") \
        .reset_index(drop=True)


def edge_columns(df) -> list[str]:
    """The `gate_s_t` columns in the table's order (D -> t first, then s -> t)."""
    return [c for c in df.columns if c.startswith("gate_")]


def edge_label(column: str) -> str:
    """`gate_D_2` -> `D->2`, `gate_0_1` -> `0->1` (source first, DESIGN.md)."""
    s, t = column[len("gate_"):].split("_")
    return f"{s}->{t}"


def gate_shares(df, top_frac: float = TOP_FRAC, gates: list[str] | None = None):
    """For every edge and gate: its share among the top `top_frac` of ranked trials and
    among all ranked trials (one row per edge and gate).

    Ranked trials are those of `ranked_trials` (no duplicates, a finite objective); the
    top group is the first ceil(top_frac * n) of them (at least one). Columns: edge,
    column, gate, top_count, top_n, top_share, all_count, all_n, all_share."""
    import pandas as pd
    r = ranked_trials(df)
    n = len(r)
    n_top = max(1, math.ceil(top_frac * n)) if n else 0
    top = r.head(n_top)
    cols = edge_columns(r)
    if gates is None:
        seen = sorted({str(v) for c in cols for v in r[c].dropna() if str(v)})
        gates = seen
    rows = []
    for c in cols:
        for g in gates:
            tc, ac = int((top[c] == g).sum()), int((r[c] == g).sum())
            rows.append({"edge": edge_label(c), "column": c, "gate": g,
                         "top_count": tc, "top_n": n_top,
                         "top_share": tc / n_top if n_top else float("nan"),
                         "all_count": ac, "all_n": n,
                         "all_share": ac / n if n else float("nan")})
    return pd.DataFrame(rows, columns=["edge", "column", "gate", "top_count", "top_n",
                                       "top_share", "all_count", "all_n", "all_share"])


def rung_times(max_t: float, grace_period: float = 1, reduction_factor: float = 2
               ) -> list[int]:
    """ASHA's rungs up to max_t: grace * rf^i."""
    # rungs grow by the factor: a factor <= 1 or a grace period < 1 would never pass
    # max_t (a run.json is checked when read; this guards direct callers too)
    if not grace_period >= 1 or not reduction_factor > 1 or not max_t >= 1:
        raise KtgError(f"ASHA needs grace_period >= 1, reduction_factor > 1 and max_epochs "
                       f">= 1; got {grace_period!r}, {reduction_factor!r}, {max_t!r}")
    rungs, r = [], float(grace_period)
    while r <= max_t + 1e-9:
        rungs.append(int(round(r)))
        r *= reduction_factor
    return list(dict.fromkeys(rungs))


def asha_rungs(history, max_epochs: int, grace_period: int = 1,
               reduction_factor: float = 2, time_col: str = "epoch",
               max_t: float | None = None):
    """How many trials reached each ASHA rung (grace * rf^i <= max_t), and the end.

    From the history (one row per trial and epoch): a trial reached rung r when it
    reported `time_col` >= r (epochs, training steps or images seen: the search's time
    unit; max_t defaults to max_epochs). Columns: time, kind (rung | end), trials."""
    import pandas as pd
    max_t = max_epochs if max_t is None else max_t
    rungs = rung_times(max_t, grace_period, reduction_factor)
    points = [(e, "rung") for e in rungs]
    if max_t not in rungs:
        points.append((int(max_t), "end"))
    reached = history.groupby("trial_id")[time_col].max() \
        if not history.empty and time_col in history else pd.Series(dtype=float)
    return pd.DataFrame([{"epoch": e, "kind": kind, "trials": int((reached >= e).sum())}
                         for e, kind in points], columns=["epoch", "kind", "trials"])


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation: Pearson's r of the ranks (ties get their mean rank);
    NaN for fewer than 3 pairs or a constant side."""
    import numpy as np
    import pandas as pd
    if len(x) < 3:
        return float("nan")
    rx = pd.Series(x, dtype=float).rank(method="average").to_numpy()
    ry = pd.Series(y, dtype=float).rank(method="average").to_numpy()
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = float(np.sqrt((rx ** 2).sum() * (ry ** 2).sum()))
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


def rung_rank_correlation(history, results, rungs: list[float], time_col: str = "epoch"):
    """How well the objective at each rung predicts the final one.

    Over the trials that ran the whole budget (status completed): Spearman's rank
    correlation between the objective a trial reported at its first report at or past
    the rung (ASHA's own comparison: the best IS so far) and its final objective. Only
    trials that went on count: a stopped trial has no final value. Columns: rung, trials,
    spearman."""
    import pandas as pd
    done = results[results.status == "completed"].set_index("trial_id")["objective"]
    rows = []
    for r in rungs:
        at, final = [], []
        for tid, fin in done.items():
            h = history[(history.trial_id == tid) & (history[time_col] >= r)] \
                if time_col in history else history.iloc[:0]
            if h.empty or not math.isfinite(float(fin)):
                continue
            v = float(h.sort_values(time_col).iloc[0]["objective"])
            if math.isfinite(v):
                at.append(v)
                final.append(float(fin))
        rows.append({"rung": r, "trials": len(at), "spearman": spearman(at, final)})
    return pd.DataFrame(rows, columns=["rung", "trials", "spearman"])


# ---- report building blocks --------------------------------------------------------------
class Missing(Exception):
    """A part that cannot be drawn from what the run holds; the message is the note."""


@dataclass
class Part:
    """One section: blocks rendered to both HTML and Markdown."""
    key: str
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def text(self, s: str) -> None:
        self.blocks.append(("p", s))

    def note(self, s: str) -> None:
        self.blocks.append(("note", s))

    def basis(self, s: str) -> None:
        self.blocks.append(("basis", s))

    def image(self, name: str, alt: str) -> None:
        self.blocks.append(("img", name, alt))

    def gallery(self, items: list[tuple[str, str]]) -> None:
        self.blocks.append(("gallery", items))

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", headers, rows))


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return "" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def _md_cell(x: Any) -> str:
    return _fmt(x).replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, intro: list[str], parts: list[Part]) -> str:
    out = [f"# {title}", ""]
    out += [line for s in intro for line in (s, "")]
    for p in parts:
        out += [f"## {p.title}", ""]
        for b in p.blocks:
            if b[0] == "p":
                out += [b[1], ""]
            elif b[0] == "note":
                out += [f"> **Note:** {b[1]}", ""]
            elif b[0] == "basis":
                out += [f"*Rests on:* {b[1]}", ""]
            elif b[0] == "img":
                out += [f"![{b[2]}]({b[1]})", ""]
            elif b[0] == "gallery":
                out += [f"![{alt}]({name})" for name, alt in b[1]] + [""]
            elif b[0] == "table":
                headers, rows = b[1], b[2]
                out.append("| " + " | ".join(headers) + " |")
                out.append("|" + "|".join("---" for _ in headers) + "|")
                out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
                out.append("")
    return "\n".join(out).rstrip() + "\n"


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444;padding-bottom:.2em} h2{margin-top:2em;border-bottom:1px
solid #ccc} table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right}
th{background:#f2f2f2} td:first-child,th:first-child{text-align:left}
.note{background:#fff6d6;border-left:4px solid #e0b000;padding:.4em .8em;margin:.6em 0}
.basis{color:#555;font-size:.9em;font-style:italic}
.gallery{display:flex;flex-wrap:wrap;gap:10px} .gallery img{width:360px}
img{max-width:100%} code{background:#f4f4f4;padding:0 .2em}
nav ol{columns:2}
"""


def render_html(title: str, intro: list[str], parts: list[Part]) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{e(title)}</h1>"]
    out += [f"<p>{_inline(s)}</p>" for s in intro]
    out.append("<nav><ol>" + "".join(f"<li><a href='#{p.key}'>{e(p.title)}</a></li>"
                                     for p in parts) + "</ol></nav>")
    for p in parts:
        out.append(f"<section id='{p.key}'><h2>{e(p.title)}</h2>")
        for b in p.blocks:
            if b[0] == "p":
                out.append(f"<p>{_inline(b[1])}</p>")
            elif b[0] == "note":
                out.append(f"<div class='note'><b>Note:</b> {_inline(b[1])}</div>")
            elif b[0] == "basis":
                out.append(f"<p class='basis'>Rests on: {_inline(b[1])}</p>")
            elif b[0] == "img":
                out.append(f"<p><img src='{e(b[1])}' alt='{e(b[2])}'></p>")
            elif b[0] == "gallery":
                out.append("<div class='gallery'>" + "".join(
                    f"<img src='{e(name)}' alt='{e(alt)}'>" for name, alt in b[1]) +
                    "</div>")
            elif b[0] == "table":
                headers, rows = b[1], b[2]
                out.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>"
                                                          for h in headers) +
                           "</tr></thead><tbody>")
                out += ["<tr>" + "".join(f"<td>{e(_fmt(c))}</td>" for c in r) + "</tr>"
                        for r in rows]
                out.append("</tbody></table>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _inline(s: str) -> str:
    """Escape, then turn `code` spans into <code> (the only markup the text uses)."""
    parts = html.escape(s).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


# ---- pictures ----------------------------------------------------------------------------
def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _save(fig, folder: Path, name: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    (folder / name).write_bytes(buf.getvalue())
    return name


NODE_W, NODE_H, ARC_MARGIN = 1.0, 0.5, 0.42


def graph_figsize(k: int) -> tuple[float, float]:
    """Inches for `draw_graph`: the same scale (1.45 in per data unit) for every k."""
    pos, _ = _layout(k)
    xs = [x for x, _ in pos.values()]
    ys = [y for _, y in pos.values()]
    wide = max(xs) - min(xs) + NODE_W + 2 * ARC_MARGIN
    high = max(ys) - min(ys) + NODE_H + 2 * ARC_MARGIN
    return 1.45 * max(wide, 3.2), 1.45 * high + 1.3  # title and legend


def _layout(k: int) -> tuple[dict[Any, tuple[float, float]], float]:
    """Generators on a circle (G0 on the left, then clockwise), D in the middle."""
    radius = {1: 1.0, 2: 1.35, 3: 1.2}.get(k, 0.33 * k + 0.2)
    angles = [math.pi - 2 * math.pi * i / k for i in range(k)] if k > 1 else [math.pi / 2]
    pos: dict[Any, tuple[float, float]] = {i: (radius * math.cos(a), radius * math.sin(a))
                                           for i, a in enumerate(angles)}
    pos["D"] = (0.0, 0.0)
    return pos, radius


def _bend(p0, p1, other_way: bool) -> float:
    """The arc3 `rad` of an edge between two generators: both directions of a pair bend
    away from D in the middle (one flat, one round) so that no arc crosses D; a pair
    whose straight line passes through D bends one direction to each side."""
    (x0, y0), (x1, y1) = p0, p1
    cross = x0 * y1 - y0 * x1          # > 0: the centre lies left of the way p0 -> p1
    chord = math.hypot(x1 - x0, y1 - y0)
    if abs(cross) / max(chord, 1e-9) < 0.25:  # passes (nearly) through the centre:
        return 0.3  # rad is relative to the way, so s -> t and t -> s bend apart
    # matplotlib's arc3 with rad > 0 bends to the right of the way p0 -> p1
    away = 1.0 if cross > 0 else -1.0
    return away * (0.42 if other_way else 0.16)


def draw_graph(ax, graph, best_is: list[float] | None = None, title: str = "",
               gates: list[str] | None = None, digits: int = 2) -> None:
    """A knowledge-transfer graph like the paper's Fig. 8 on a matplotlib axis.

    Generators sit on a circle with D in the middle; every non-cutoff edge s -> t is one
    arrow from s to t (its loss trains t), coloured by its gate; the two directions of a
    pair are two arcs. Nodes carry the model name and the best IS."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch
    k = graph.k
    pos, radius = _layout(k)
    frozen, dead = set(graph.frozen_nodes()), set(graph.dead_nodes())
    w, h = NODE_W, NODE_H
    patches: dict[Any, Any] = {}
    d = Circle(pos["D"], 0.17, fc="#fde0d0", ec="#a0522d", lw=1.5, zorder=3)
    ax.add_patch(d)
    ax.text(*pos["D"], "D", ha="center", va="center", fontsize=12, fontweight="bold",
            zorder=4)
    patches["D"] = d
    for i, node in enumerate(graph.nodes):
        label = f"G{i}\n{node.model}"
        if best_is is not None and i < len(best_is) and best_is[i] is not None \
                and math.isfinite(best_is[i]):
            label += f"\nIS {best_is[i]:.{digits}f}"
        fc = "#dbe9f6"
        if i in frozen:
            label, fc = label + "\n(frozen)", "#fff2b3"
        elif i in dead:
            label, fc = label + "\n(never learns)", "#e6e6e6"
        x, y = pos[i]
        box = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.03",
                             fc=fc, ec="#345", lw=1.5, zorder=3)
        ax.add_patch(box)
        ax.text(x, y, label, ha="center", va="center", fontsize=8.5, zorder=4,
                linespacing=1.15)
        patches[i] = box
    used = []
    for (s, t), g in graph.gates.items():
        if g == "cutoff":
            continue
        used.append(g)
        rad = 0.0 if s == "D" else _bend(pos[s], pos[t], other_way=s > t)
        ax.add_patch(FancyArrowPatch(
            pos[s], pos[t], patchA=patches[s], patchB=patches[t], shrinkA=1, shrinkB=1,
            arrowstyle="-|>", mutation_scale=16, color=gate_colour(g), lw=2.0,
            connectionstyle=f"arc3,rad={rad}", zorder=2))
    legend_gates = [g for g in (gates or []) if g != "cutoff"] or \
        list(dict.fromkeys(used))
    handles = [Line2D([], [], color=gate_colour(g), lw=2.5,
                      label=g + ("" if g in used else " (none)"))
               for g in legend_gates]
    handles.append(Line2D([], [], color="none", label="cutoff: no arrow"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
              ncol=min(3, len(handles)), fontsize=8, frameon=False, handlelength=1.8,
              columnspacing=1.2)
    xs = [x for x, _ in pos.values()]
    ys = [y for _, y in pos.values()]
    margin = ARC_MARGIN  # room for the outer arcs
    ax.set_xlim(min(xs) - w / 2 - margin, max(xs) + w / 2 + margin)
    ax.set_ylim(min(ys) - h / 2 - margin, max(ys) + h / 2 + margin)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)


def _to_grid(images, nrow: int):
    """(n, c, h, w) in [-1, 1] -> one (H, W[, 3]) array in [0, 1] with 1-px gutters."""
    import numpy as np
    x = ((images.clamp(-1, 1) + 1) / 2).numpy()
    n, c, h, w = x.shape
    ncol = math.ceil(n / nrow)
    grid = np.ones((c, nrow * (h + 1) + 1, ncol * (w + 1) + 1), dtype=np.float32)
    for j in range(n):
        r, q = divmod(j, ncol)
        grid[:, 1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = x[j]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


# ---- the run -----------------------------------------------------------------------------
@dataclass
class RunView:
    path: Path
    info: dict
    cfg: dict
    results: Any
    history: Any
    ranked: Any

    @property
    def k(self) -> int:
        return int(self.cfg.get("k", 0) or 0)

    @property
    def name(self) -> str:
        return str(self.info.get("name", self.path.name))


def open_run(run: str | Path) -> RunView:
    """Read a run directory; KtgError when it is not one."""
    p = Path(run).expanduser()
    if not p.exists():
        raise KtgError(f"run directory {str(p)!r} does not exist; a run directory is what "
                       f"`ktg search` prints as 'run dir'")
    if not p.is_dir():
        raise KtgError(f"{str(p)!r} is a file, not a run directory; a run directory is "
                       f"what `ktg search` prints as 'run dir'")
    from .runinfo import read_run_info
    info = read_run_info(p)  # every field checked (types, ranges)
    results = load_results(p)
    history = load_history(p)
    return RunView(p.resolve(), info, info["config"], results, history,
                   ranked_trials(results))


# ---- re-evaluation -----------------------------------------------------------------------
def restore_best(run_dir: str | Path, trial_id: str, data=None, evaluator=None):
    """(trainer, checkpoint path): the trial's newest checkpoint with the generator
    weights of its best epoch in place (`Trainer.load_best`). Missing when Tune kept
    no checkpoint for it."""
    from .training import Trainer
    ckpt = latest_checkpoint(run_dir, trial_id)
    if ckpt is None:
        raise Missing(f"trial {trial_id} has no checkpoint in the run directory")
    trainer = Trainer.restore(ckpt, data=data, evaluator=evaluator)
    trainer.load_best()
    return trainer, ckpt


def _data_for(run: RunView):
    from .data import load_dataset
    c = run.cfg
    return load_dataset(c.get("dataset", "digits"), int(c.get("image_size", 16)),
                        root=c.get("data_root"))


def reevaluate(run: RunView, top: int = 3, num_samples: int = 10_000,
               device: str = "auto", progress: bool = True, data=None):
    """Re-score the best checkpoints of the top `top` ranked graphs with `num_samples`
    samples per generator (IS and FID), reusing `RUN/reevaluation.parquet` rows with the
    same trial, sample count and best epoch. Returns (rows for this request, notes)."""
    import pandas as pd
    import torch
    from tqdm import tqdm
    from .training import resolve_device
    notes: list[str] = []
    want = run.ranked.head(top)
    store_file = run.path / REEVAL_FILE
    stored = read_reevaluations(store_file) if store_file.exists() else pd.DataFrame()
    keep, todo = [], []
    for rank, (_, r) in enumerate(want.iterrows(), start=1):
        hit = stored[(stored.trial_id == r.trial_id) &
                     (stored.num_samples == num_samples) &
                     (stored.best_epoch == int(r.best_epoch))] if not stored.empty \
            else stored
        if len(hit):
            row = hit.iloc[-1].to_dict()
            row.update(search_rank=rank, search_objective=float(r.objective))
            keep.append(row)
        else:
            todo.append((rank, r))
    ready = []
    for rank, r in todo:  # checkpoints first: no evaluator is built for nothing
        ckpt = latest_checkpoint(run.path, r.trial_id)
        if ckpt is None:
            notes.append(f"rank {rank} (trial {r.trial_id}) has no checkpoint in the run "
                         f"directory; not re-evaluated")
        else:
            ready.append((rank, r))
    if ready:
        from .metrics import Evaluator
        c = run.cfg
        data = data if data is not None else _data_for(run)
        dev = str(resolve_device(device))
        evaluator = Evaluator(data, extractor=c.get("extractor", "classifier"),
                              num_samples=num_samples, fid=True, device=dev,
                              inception_weights=c.get("inception_weights"))
        bar = tqdm(total=len(ready) * run.k, desc=f"re-evaluate ({num_samples} samples)",
                   unit="generator", file=sys.stderr, disable=not progress,
                   dynamic_ncols=True)
        for rank, r in ready:
            t0 = time.perf_counter()
            try:
                trainer, ckpt = restore_best(run.path, r.trial_id, data=data,
                                             evaluator=evaluator)
            except (Missing, KtgError) as e:  # a gone, truncated or refused checkpoint
                notes.append(f"rank {rank} (trial {r.trial_id}): {type(e).__name__}: {e}; "
                             f"not re-evaluated")
                bar.update(run.k)
                continue
            trainer.device = torch.device(dev)  # the re-evaluation's device, not the run's
            trainer.generators.to(trainer.device)
            if trainer.best_generators is None:
                notes.append(f"rank {rank} (trial {r.trial_id}): its checkpoint holds no "
                             f"best-epoch weights; the last epoch's ({trainer.epoch}) "
                             f"were re-evaluated")
            row: dict[str, Any] = {"trial_id": r.trial_id, "num_samples": num_samples,
                                   "best_epoch": int(r.best_epoch),
                                   "weights_epoch": int(trainer.best_epoch
                                                        if trainer.best_generators
                                                        is not None else trainer.epoch),
                                   "checkpoint_epoch": int(trainer.epoch),
                                   "search_rank": rank,
                                   "search_objective": float(r.objective)}
            for i in range(trainer.graph.k):
                bar.set_postfix(trial=r.trial_id, G=i)
                s = evaluator.score_generator(_z_stream(trainer, i),
                                              num_samples=num_samples)
                row[f"is_g{i}"] = float(s["is"])
                row[f"is_std_g{i}"] = float(s.get("is_std", float("nan")) or float("nan"))
                fid = s.get("fid")
                row[f"fid_g{i}"] = float(fid) if fid is not None else float("nan")
                bar.update(1)
            row["objective"] = max(row[f"is_g{i}"] for i in trainer.scored_nodes())
            row["seconds"] = time.perf_counter() - t0
            row["evaluated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            keep.append(row)
            if not stored.empty:
                stored = stored[~((stored.trial_id == r.trial_id) &
                                  (stored.num_samples == num_samples))]
            stored = pd.concat([stored, pd.DataFrame([row])], ignore_index=True)
            _write_parquet(stored, store_file)  # after every trial: an interrupt keeps it
        bar.close()
    out = pd.DataFrame(keep)
    if not out.empty:
        out = out.sort_values("search_rank").reset_index(drop=True)
        order = out["objective"].rank(ascending=False, method="first")
        out["reeval_rank"] = order.astype(int)
    return out, notes


def read_reevaluations(path: Path):
    """RUN/reevaluation.parquet, checked like every table read from a run."""
    from .safeload import read_parquet
    return read_parquet(path, "re-evaluation table", {
        "trial_id": "str", "num_samples": "num", "best_epoch": "num", "objective": "num",
        "search_objective": "num"})


def _z_stream(trainer, node: int) -> Callable[[int], Any]:
    """`sample(n)` for `Evaluator.score_generator`, which calls it once per batch: each
    call draws the next n latent points of one seeded stream, so that the batches are
    different images (a fixed seed per call would repeat the first batch). Every
    generator gets the same stream: they are compared on the same z."""
    import torch
    gen = torch.Generator().manual_seed(REEVAL_SEED)

    def sample(n: int):
        return trainer.sample(node, n, z=torch.randn(n, trainer.config.nz, generator=gen))
    return sample


def _write_parquet(df, path: Path) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


# ---- the parts ---------------------------------------------------------------------------
@dataclass
class Options:
    top: int = 10
    reeval_top: int = 3
    reeval_samples: int = 10_000
    reeval: bool = True
    device: str = "auto"
    progress: bool = True
    strict: bool = False  # re-raise a part's unexpected error (tests) instead of a note
    allow_external_storage: bool = False  # open a study run.json places outside the run


class Builder:
    """Builds every part into `folder`; a part that cannot be drawn becomes a note."""

    def __init__(self, run: RunView, folder: Path, opts: Options) -> None:
        self.run, self.folder, self.opts = run, folder, opts
        self.parts: list[Part] = []
        self._data = None
        self.reeval = None
        top = run.ranked.head(opts.top)
        self.digits = is_digits(list(top.get("objective", [])) +
                                [v for c in top.columns if c.startswith("is_best_g")
                                 for v in top[c]])

    # shared helpers
    def data(self):
        if self._data is None:
            self._data = _data_for(self.run)
        return self._data

    def top(self):
        return self.run.ranked.head(self.opts.top)

    def gates(self) -> list[str]:
        return [str(g) for g in self.run.cfg.get("gates", [])]

    def graph_of(self, row):
        from .graph import Graph
        if not row.get("graph"):
            raise Missing(f"trial {row['trial_id']} has no graph recorded")
        return Graph.from_json(row["graph"])

    def part(self, key: str, title: str, fn: Callable[[Part], None]) -> None:
        p = Part(key, title)
        try:
            fn(p)
        except Missing as e:
            p.note(str(e))
        except Exception as e:  # one broken part must not cost the whole report
            if self.opts.strict:
                raise
            print(f"ktg report: warning: part {title!r} failed: {type(e).__name__}: {e}"
                  f" (KTG_DEBUG=1 shows where)", file=sys.stderr)
            if os.environ.get("KTG_DEBUG"):
                traceback.print_exc(file=sys.stderr)
            p.note(f"this part could not be drawn: {type(e).__name__}: {e}")
        self.parts.append(p)

    def need_trials(self) -> None:
        """Missing (with the reason, in full the first time) when nothing is ranked."""
        if not self.run.ranked.empty:
            return
        df = self.run.results
        if df.empty:
            why = "no finished trial yet"
            more = ": the search has just started; run `ktg report` again later"
        else:
            counts = df["status"].value_counts().to_dict() if "status" in df.columns \
                else {}
            why = "no ranked trial yet"
            more = (f": none of the {len(df)} finished trial(s) has an objective of its "
                    f"own (" + ", ".join(f"{v} {k}" for k, v in counts.items()) + ")")
        said = getattr(self, "_said_why", False)
        self._said_why = True
        raise Missing(why + (" (see above)" if said else more))

    # 1. ranked table
    def ranked_table(self, p: Part) -> None:
        run, k = self.run, self.run.k
        c = run.cfg
        p.text(f"Ranking rule: trials are ranked by `objective` = the best inception score "
               f"(IS) reached at any epoch by the best generator"
               f"{' (node 0, the target)' if c.get('target_node') else ''}, "
               f"not the last epoch's value. Each IS was computed on "
               f"{c.get('eval_samples', '?')} samples per generator during the search; "
               f"see the re-evaluation below for many more. Duplicates (the same graph up "
               f"to renumbering, not retrained) are left out and point at their originals.")
        self.need_trials()
        df, top = run.results, self.top()
        dup = df[df.status == "duplicate"] if "status" in df.columns else df.iloc[0:0]
        unranked = len(df) - len(dup) - len(run.ranked)
        p.basis(f"{len(run.ranked)} ranked trial(s) of {len(df)} in the table "
                f"({len(dup)} duplicate(s), {unranked} without an objective); "
                f"showing the top {len(top)}.")
        headers = ["rank", "trial", "objective"] + [f"IS G{i}" for i in range(k)] + \
            [f"FID G{i}" for i in range(k)] + ["best epoch", "epochs", "status", "key"]
        rows = []
        for rank, (_, r) in enumerate(top.iterrows(), start=1):
            d = self.digits
            rows.append([rank, r.trial_id, f"{r.objective:.{d}f}"] +
                        [_fmt(_float(r.get(f"is_best_g{i}")), d) for i in range(k)] +
                        [_float(r.get(f"fid_g{i}")) for i in range(k)] +
                        [int(r.best_epoch), int(r.epochs), r.status, r.graph_key])
        p.table(headers, rows)
        p.text(f"`IS Gi` is generator i's best IS over the epochs; `FID Gi` its FID at the "
               f"trial's best epoch (lower is better); `epochs` = epochs trained (ASHA "
               f"stops weak trials early; max {c.get('max_epochs', '?')}).")
        if len(dup):
            pairs = ", ".join(f"{a} -> {b}" for a, b in
                              zip(dup.trial_id.head(12), dup.duplicate_of.head(12)))
            p.text(f"Duplicates left out (duplicate -> original): {pairs}"
                   f"{' ...' if len(dup) > 12 else ''}.")

    # 7. re-evaluation
    def reevaluation(self, p: Part) -> None:
        o = self.opts
        p.text(f"The best checkpoints (the weights of each trial's best epoch) of the top "
               f"{o.reeval_top} graphs re-scored with {o.reeval_samples:,} samples per "
               f"generator (fresh z, not the search's), for IS and FID. A graph that won "
               f"on a lucky small sample drops here. Stored in `{REEVAL_FILE}` in the run "
               f"directory and reused by later reports.")
        self.need_trials()
        if not o.reeval:
            store = self.run.path / REEVAL_FILE
            if not store.exists():
                raise Missing("re-evaluation skipped (--no-reeval) and none stored yet")
            import pandas as pd
            stored = read_reevaluations(store)
            stored = stored[stored.num_samples == o.reeval_samples]
            ids = list(self.run.ranked.head(o.reeval_top).trial_id)
            stored = stored[stored.trial_id.isin(ids)]
            if stored.empty:
                raise Missing(f"re-evaluation skipped (--no-reeval) and no stored rows "
                              f"with {o.reeval_samples} samples for the top graphs")
            stored = stored.copy()
            stored["search_rank"] = [ids.index(t) + 1 for t in stored.trial_id]
            stored = stored.sort_values("search_rank").reset_index(drop=True)
            stored["reeval_rank"] = stored["objective"].rank(ascending=False,
                                                             method="first").astype(int)
            rows, notes = stored, ["--no-reeval: showing stored rows"]
        else:
            rows, notes = reevaluate(self.run, o.reeval_top, o.reeval_samples,
                                     device=o.device, progress=o.progress,
                                     data=self.data())
        for n in notes:
            p.note(n)
        if rows.empty:
            raise Missing("no top graph could be re-evaluated")
        self.reeval = rows
        k = self.run.k
        p.basis(f"{len(rows)} graph(s) x {k} generator(s) x "
                f"{int(rows.num_samples.iloc[0]):,} samples each.")
        headers = ["search rank", "re-eval rank", "trial", "objective (search)",
                   "objective (re-eval)"] + [f"IS G{i} (± std)" for i in range(k)] + \
            [f"FID G{i}" for i in range(k)] + ["samples"]
        table = []
        for _, r in rows.iterrows():
            d = is_digits(list(rows.objective) + list(rows.search_objective))
            table.append([int(r.search_rank), int(r.reeval_rank), r.trial_id,
                          f"{r.search_objective:.{d}f}", f"{r.objective:.{d}f}"] +
                         [f"{r[f'is_g{i}']:.{d}f} ± {_float(r.get(f'is_std_g{i}')):.{d}f}"
                          for i in range(k)] +
                         [_float(r.get(f"fid_g{i}")) for i in range(k)] +
                         [int(r.num_samples)])
        p.table(headers, table)
        moved = rows[rows.search_rank != rows.reeval_rank]
        if len(rows) < 2:
            p.text("Only one graph was re-evaluated: nothing to re-rank.")
        elif moved.empty:
            p.text("The re-evaluation keeps the search's order.")
        else:
            order = " > ".join(rows.sort_values("reeval_rank").trial_id)
            p.text(f"The re-evaluation changes the order: {order} "
                   f"({len(moved)} of {len(rows)} graphs moved).")
        plt = _plt()
        fig, ax = plt.subplots(figsize=(7, 1.4 + 0.55 * len(rows)), layout="constrained")
        y = list(range(len(rows)))[::-1]
        ax.scatter(rows.search_objective, y, marker="o", s=50, color="#777",
                   label=f"search ({self.run.cfg.get('eval_samples', '?')} samples, best "
                         f"epoch)", zorder=3)
        best_nodes = [max(range(k), key=lambda i: r[f"is_g{i}"]) for _, r in rows.iterrows()]
        err = [_float(r.get(f"is_std_g{i}")) for (_, r), i in zip(rows.iterrows(),
                                                                   best_nodes)]
        ax.errorbar(rows.objective, y, xerr=[0 if math.isnan(e) else e for e in err],
                    fmt="D", color="#d62728", ms=7, capsize=4, zorder=4,
                    label=f"re-evaluation ({int(rows.num_samples.iloc[0]):,} samples, ± std)")
        for yy, (_, r) in zip(y, rows.iterrows()):
            ax.plot([r.search_objective, r.objective], [yy, yy], color="#ccc", zorder=1)
        ax.set_yticks(y)
        ax.set_yticklabels([f"#{int(r.search_rank)} {r.trial_id} -> #{int(r.reeval_rank)}"
                            for _, r in rows.iterrows()], fontsize=8)
        ax.set_xlabel("objective: IS of the best generator")
        ax.set_ylim(-0.7, len(rows) - 0.3)
        fig.legend(fontsize=8, loc="outside lower center", ncol=2, frameon=False)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title("Search rank -> re-evaluated rank", fontsize=10)
        p.image(_save(fig, self.folder, "reevaluation.png"),
                "search objective against re-evaluated objective")

    # 2. graph pictures
    def graph_pictures(self, p: Part) -> None:
        p.text("Each top graph like the paper's Fig. 8: D and the generators (model, best "
               "IS over the epochs), one arrow s -> t per non-cutoff edge (the loss of that "
               "edge trains t), coloured by gate. Cutoff edges are not drawn.")
        self.need_trials()
        plt = _plt()
        items = []
        for rank, (_, r) in enumerate(self.top().iterrows(), start=1):
            try:
                g = self.graph_of(r)
            except Missing as e:
                p.note(f"rank {rank}: {e}")
                continue
            best = [_float(r.get(f"is_best_g{i}")) for i in range(g.k)]
            fig, ax = plt.subplots(figsize=graph_figsize(g.k))
            draw_graph(ax, g, best, f"#{rank}  trial {r.trial_id}\nobjective "
                       f"{r.objective:.{self.digits}f}  transfer {g.transfer}",
                       gates=self.gates(), digits=min(self.digits, 4))
            items.append((_save(fig, self.folder, f"graph_{rank:02d}.png"),
                          f"graph of rank {rank}, trial {r.trial_id}"))
        if not items:
            raise Missing("no top graph could be drawn")
        p.basis(f"the top {len(items)} ranked trial(s).")
        p.gallery(items)

    # 3. curves
    def curves(self, p: Part) -> None:
        p.text("IS per epoch of every generator of the top graphs (from `history.parquet`; "
               "the star marks the best epoch, whose value is the objective).")
        self.need_trials()
        h = self.run.history
        top = self.top()
        if h.empty:
            raise Missing("history.parquet is missing or empty: no per-epoch values yet")
        k = self.run.k
        cols = [f"is_g{i}" for i in range(k) if f"is_g{i}" in h.columns]
        if not cols:
            raise Missing("the history has no `is_g*` columns")
        plt = _plt()
        n = len(top)
        ncol = min(5, n)
        nrow = math.ceil(n / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 2.5 * nrow + 0.6),
                                 sharey=True, squeeze=False)
        colours = plt.get_cmap("tab10")
        for j, (_, r) in enumerate(top.iterrows()):
            ax = axes[j // ncol][j % ncol]
            ht = h[h.trial_id == r.trial_id].sort_values("epoch")
            for i, c in enumerate(cols):
                ax.plot(ht.epoch, ht[c], marker="o", ms=3, color=colours(i), label=f"G{i}")
            be = ht[ht.epoch == r.best_epoch]
            if len(be):
                vals = be[cols].iloc[0]
                # a hollow star: the generators' points inside it stay visible
                ax.plot([r.best_epoch], [vals.max()], marker="*", ms=16,
                        markerfacecolor="none", markeredgecolor="#c49000",
                        markeredgewidth=1.6, zorder=5, linestyle="none")
            ax.set_title(f"#{j + 1} {r.trial_id}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.set_xlim(0.5, max(2, int(self.run.cfg.get("max_epochs", 1)) + 0.5))
            ax.xaxis.get_major_locator().set_params(integer=True)
            if j % ncol == 0:
                ax.set_ylabel("IS")
            if j // ncol == nrow - 1:
                ax.set_xlabel("epoch")
        for j in range(n, nrow * ncol):
            axes[j // ncol][j % ncol].axis("off")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=len(cols), frameon=False,
                   bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout(rect=(0, 0, 1, 0.93))
        p.basis(f"{len(h[h.trial_id.isin(top.trial_id)])} epoch rows of the top {n} "
                f"trial(s).")
        p.image(_save(fig, self.folder, "curves.png"), "IS per epoch of the top graphs")

    # 4. distributions
    def distributions(self, p: Part) -> None:
        p.text("The objective of every ranked trial, by transfer kind (the paper's Fig. 7) "
               "and by the gate on each D -> t edge. Box: quartiles and median; dots: "
               "trials.")
        self.need_trials()
        r = self.run.ranked
        plt = _plt()
        dcols = [c for c in edge_columns(r) if c.startswith("gate_D_")]
        kinds = [t for t in dict.fromkeys(r.get("transfer", []).tolist()) if t]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4), sharey=True,
                                     gridspec_kw={"width_ratios": [max(1, len(kinds)),
                                                                   max(2, len(dcols) * 2)]})
        groups = [r[r.transfer == t].objective.dropna().values for t in kinds]
        _boxes(a1, groups, [f"{t}\n(n={len(v)})" for t, v in zip(kinds, groups)],
               ["#8fb8de"] * len(groups))
        a1.set_title("by transfer kind", fontsize=10)
        a1.set_ylabel("objective (best IS reached)")
        if len(kinds) == 1:
            a1.set_xlabel("(this search used one transfer kind)", fontsize=8)
        gates = [g for g in self.gates() if any((r[c] == g).any() for c in dcols)]
        data, labels, colours, pos = [], [], [], []
        x = 0.0
        for g in gates:
            for c in dcols:
                v = r[r[c] == g].objective.dropna().values
                data.append(v)
                labels.append(f"{edge_label(c)}\n(n={len(v)})")
                colours.append(gate_colour(g))
                pos.append(x)
                x += 1
            x += 0.6
        _boxes(a2, data, labels, colours, positions=pos, alpha=0.45)
        ymin, ymax = a2.get_ylim()
        x = 0.0
        for g in gates:
            a2.text(x + (len(dcols) - 1) / 2, ymax + (ymax - ymin) * 0.02, g, ha="center",
                    va="bottom", fontsize=9, fontweight="bold",
                    color="#777777" if g == "cutoff" else gate_colour(g))
            x += len(dcols) + 0.6
        a2.set_ylim(ymin, ymax + (ymax - ymin) * 0.12)
        a2.set_title("by the gate on each D -> t edge", fontsize=10, pad=16)
        for a in (a1, a2):
            a.grid(axis="y", alpha=0.3)
            a.tick_params(axis="x", labelsize=8)
        fig.tight_layout()
        p.basis(f"{len(r)} ranked trial(s) (duplicates left out: one row per trained "
                f"graph).")
        p.image(_save(fig, self.folder, "distributions.png"),
                "objective by transfer kind and by D-edge gate")

    # 5. what matters
    def gate_share_part(self, p: Part) -> None:
        p.text(f"For every edge: the share of each gate among the top "
               f"{TOP_FRAC:.0%} of ranked trials (by objective) against all ranked trials. "
               f"A gate that is much more common at the top than overall is what the best "
               f"graphs have in common on that edge.")
        self.need_trials()
        shares = gate_shares(self.run.results, TOP_FRAC, self.gates() or None)
        if shares.empty:
            raise Missing("the results table has no gate columns")
        n_top, n = int(shares.top_n.iloc[0]), int(shares.all_n.iloc[0])
        p.basis(f"top group: {n_top} trial(s) (ceil of {TOP_FRAC:.0%} of {n}, at least "
                f"one); all: {n} ranked trial(s)." +
                (" With so few trials at the top, the top shares are anecdotes."
                 if n_top < 5 else ""))
        edges = list(dict.fromkeys(shares.edge))
        gates = list(dict.fromkeys(shares.gate))
        top = shares.pivot(index="edge", columns="gate", values="top_share") \
            .loc[edges, gates]
        allv = shares.pivot(index="edge", columns="gate", values="all_share") \
            .loc[edges, gates]
        plt = _plt()
        fig, axes = plt.subplots(1, 3, figsize=(3.0 + 3.3 * len(gates),
                                                1.4 + 0.42 * len(edges)), sharey=True)
        panels = ((axes[0], top.values, f"top {TOP_FRAC:.0%} (n={n_top})", "Blues", 0, 1),
                  (axes[1], allv.values, f"all ranked trials (n={n})", "Blues", 0, 1),
                  (axes[2], top.values - allv.values, "difference: top - all", "RdBu_r",
                   -1, 1))
        for ax, m, title, cmap, lo, hi in panels:
            im = ax.imshow(m, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
            ax.set_xticks(range(len(gates)))
            ax.set_xticklabels(gates, fontsize=9, rotation=20, ha="right")
            ax.set_yticks(range(len(edges)))
            ax.set_yticklabels([e.replace("->", " -> ") for e in edges], fontsize=9)
            ax.set_title(title, fontsize=10)
            for yi in range(len(edges)):
                for xi in range(len(gates)):
                    v = m[yi, xi]
                    txt = f"{v:+.2f}" if lo < 0 else f"{v:.2f}"
                    ax.text(xi, yi, txt, ha="center", va="center", fontsize=8,
                            color="white" if abs(v) > 0.6 else "black")
            if ax is not axes[0]:  # the first two panels share one scale
                fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03, shrink=0.9,
                             label="share of trials" if lo == 0 else "share difference")
        axes[0].set_ylabel("edge s -> t")
        p.image(_save(fig, self.folder, "gate_shares.png"), "gate share heat map")
        rows = [[r.edge, r.gate, f"{r.top_share:.2f} ({r.top_count}/{r.top_n})",
                 f"{r.all_share:.2f} ({r.all_count}/{r.all_n})",
                 f"{r.top_share - r.all_share:+.2f}"] for r in shares.itertuples()]
        p.table(["edge", "gate", f"share in top {TOP_FRAC:.0%}", "share in all",
                 "difference"], rows)

    def importance_part(self, p: Part) -> None:
        import optuna
        p.text("Each searched parameter's importance for the objective, from Optuna's own "
               "importance evaluator (`optuna.importance.get_param_importances`, default "
               "evaluator) run on the stored study. Parameters: one gate per edge "
               "(`gate_s_t` is the gate on s -> t), and the models / transfer kind when "
               "they are searched.")
        info = self.run.info
        url, name = info.get("storage"), info.get("study_name")
        if not url or not name:
            raise Missing("run.json names no Optuna storage or study")
        from .search import own_study_storage
        url, inside = own_study_storage(url, self.run.path)
        if not inside and not self.opts.allow_external_storage:
            raise Missing(f"run.json names a study outside the run directory ({url!r}); a "
                          f"shared run must not make the report connect elsewhere: with "
                          f"--allow-external-storage it is opened")
        if url.startswith("sqlite:///"):
            db = Path(url[len("sqlite:///"):])
            if not db.exists():
                raise Missing(f"the Optuna study's database {str(db)!r} does not exist yet "
                              f"(no trial has started)")
        from .study import open_optuna_storage
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        try:
            study = optuna.load_study(study_name=name, storage=open_optuna_storage(url))
        except KeyError:
            raise Missing(f"the Optuna storage holds no study {name!r} yet") from None
        complete = study.get_trials(deepcopy=False,
                                    states=(optuna.trial.TrialState.COMPLETE,))
        n_all = len(study.get_trials(deepcopy=False))
        p.basis(f"{len(complete)} COMPLETE trial(s) of {n_all} in study {name!r} (ASHA's "
                f"early-stopped trials count as COMPLETE with the value at the stop; "
                f"duplicates count with their original's value).")
        if len(complete) < 2:
            raise Missing(f"Optuna's importance evaluator needs at least 2 complete trials; "
                          f"the study has {len(complete)}")
        evaluator = optuna.importance.PedAnovaImportanceEvaluator() \
            if hasattr(optuna.importance, "PedAnovaImportanceEvaluator") else None
        ev_name = type(evaluator).__name__ if evaluator else "default"
        try:
            imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
        except (ValueError, RuntimeError, ZeroDivisionError) as e:
            raise Missing(f"Optuna's importance evaluator ({ev_name}) cannot run on this "
                          f"study: {e}") from None
        values = {pn: float(v) for pn, v in imp.items()}
        # a parameter that took a single value has no importance to measure: say so
        fixed = sorted({pn for t in complete for pn in t.params} - set(values))
        if not values:
            raise Missing(f"Optuna's importance evaluator ({ev_name}) returned no "
                          f"parameters (every parameter took a single value?)")
        if all(v == 0 or math.isnan(v) for v in values.values()):
            p.note("every importance is 0: the objective did not vary with any parameter "
                   "(or too few trials for the evaluator to tell them apart)")
        p.text(f"Evaluator: `{ev_name}`; importances normalised to sum to 1.")
        if fixed:
            p.note(f"not assessed (single-valued or not in every trial): {', '.join(fixed)}")
        plt = _plt()
        names = list(values)[::-1]
        fig, ax = plt.subplots(figsize=(6.5, 0.8 + 0.38 * len(names)))
        vals = [values[nm] for nm in names]
        colours = ["#d62728" if nm.startswith("gate_D_") else "#1f77b4"
                   if nm.startswith("gate_") else "#7f7f7f" for nm in names]
        ax.barh(range(len(names)), vals, color=colours)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels([_param_label(nm) for nm in names], fontsize=9)
        for yi, v in enumerate(vals):
            ax.text(v, yi, f" {v:.3f}", va="center", fontsize=8)
        ax.set_xlim(0, max(vals + [1e-9]) * 1.2)
        ax.set_xlabel("importance (sums to 1)")
        ax.set_title(f"Optuna parameter importances ({ev_name}, {len(complete)} trials)",
                     fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        p.image(_save(fig, self.folder, "importances.png"), "parameter importances")
        p.table(["parameter", "edge / meaning", "importance"],
                [[nm, _param_label(nm), values[nm]] for nm in values])

    # 6. ASHA
    def _clock(self) -> tuple[str, str, float]:
        """(time unit, history column, max_t) of the run's ASHA."""
        from .search import TIME_ATTRS
        c, h = self.run.cfg, self.run.history
        unit = c.get("time_unit", "epochs")
        col = TIME_ATTRS.get(unit, "epoch")
        max_epochs = int(c.get("max_epochs", 1))
        if unit == "epochs" or h.empty or col not in h:
            return unit, col if unit == "epochs" else "epoch", max_epochs
        # the budget in steps / images: what the trials that ran it reached
        full = h.groupby("trial_id").agg({"epoch": "max", col: "max"})
        full = full[full.epoch >= max_epochs]
        return unit, col, float(full[col].max() if not full.empty else h[col].max())

    def asha(self, p: Part) -> None:
        c = self.run.cfg
        max_epochs = int(c.get("max_epochs", 1))
        grace, rf = int(c.get("grace_period", 1)), float(c.get("reduction_factor", 2))
        unit, col, max_t = self._clock()
        p.text(f"ASHA (grace period {grace} {unit}, reduction factor {rf:g}, max "
               f"{max_epochs} epochs) stops weak trials at rungs {grace}, {grace * rf:g}, "
               f"... {unit}: how many trials reached each rung (from the history). "
               f"Duplicates and skipped graphs never train and are not counted.")
        h = self.run.history
        if h.empty:
            raise Missing("history.parquet is missing or empty: no trial has reported an "
                          "epoch yet")
        table = asha_rungs(h, max_epochs, grace, rf, time_col=col, max_t=max_t)
        n = h.trial_id.nunique()
        p.basis(f"{n} trial(s) that reported at least one epoch.")
        plt = _plt()
        fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(table), 3.2))
        labels = [f"{unit[:-1]} {e:,}\n(" + ", ".join(
                      (["rung"] if kind == "rung" else []) +
                      (["max"] if e == max_t else [])) + ")"
                  for e, kind in zip(table.epoch, table.kind)]
        bars = ax.bar(range(len(table)), table.trials, color="#4c72b0", width=0.6)
        for b, v in zip(bars, table.trials):
            ax.text(b.get_x() + b.get_width() / 2, v, str(v), ha="center", va="bottom",
                    fontsize=9)
        ax.set_xticks(range(len(table)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel("trials that reached it")
        ax.set_ylim(0, max(1, table.trials.max()) * 1.18)
        ax.set_title("ASHA at a glance", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        p.image(_save(fig, self.folder, "asha.png"), "trials per ASHA rung")
        p.table([unit[:-1], "kind", "trials reached", "share of trained"],
                [[int(e), kind, int(v), f"{v / n:.0%}" if n else ""]
                 for e, kind, v in zip(table.epoch, table.kind, table.trials)])

    def early_stops(self, p: Part) -> None:
        c = self.run.cfg
        grace, rf = int(c.get("grace_period", 1)), float(c.get("reduction_factor", 2))
        unit, col, max_t = self._clock()
        p.text(f"How far the early stops can be trusted: for every ASHA rung, Spearman's "
               f"rank correlation between the objective a trial had at the rung (what ASHA "
               f"compares) and its final objective. 1 means the rung ranks trials exactly "
               f"as the end does; near 0 means ASHA stopped trials on noise. Caveat: only "
               f"trials that ran the whole budget count (a stopped trial has no final "
               f"value), and those are the ones that looked good early, so the true "
               f"correlation over all trials is likely lower.")
        h, res = self.run.history, self.run.results
        if h.empty or res.empty:
            raise Missing("no trial has finished yet")
        rungs = [r for r in rung_times(max_t, grace, rf) if r < max_t]
        if not rungs:
            raise Missing(f"the grace period ({grace} {unit}) leaves no rung before the "
                          f"end of the budget")
        table = rung_rank_correlation(h, res, rungs, col)
        n = int((res.status == "completed").sum())
        p.basis(f"{n} trial(s) that ran the whole budget ({max_t:,.0f} {unit}).")
        if n < 3:
            raise Missing(f"only {n} trial(s) ran the whole budget: a rank correlation "
                          f"needs at least 3")
        first = table.iloc[0]
        if math.isfinite(first.spearman):
            p.note(f"At the first rung ({int(first.rung):,} {unit}), Spearman's rho is "
                   f"{first.spearman:.2f} over {int(first.trials)} trials"
                   + (": early stops there are a fair guess of the final rank."
                      if first.spearman >= 0.6 else
                      ": below 0.6, so a rung this early stops trials on little evidence; "
                      "a larger grace period would judge them later."))
        p.table([f"rung ({unit})", "trials", "Spearman rho"],
                [[f"{int(r.rung):,}", int(r.trials), _fmt(r.spearman, 2)]
                 for r in table.itertuples()])

    # 8. samples
    def _best_trainer(self):
        last = None
        for rank, (_, r) in enumerate(self.run.ranked.head(self.opts.top).iterrows(),
                                      start=1):
            try:
                trainer, _ = restore_best(self.run.path, r.trial_id, data=self.data())
                return rank, r, trainer
            except (Missing, KtgError) as e:
                last = e
        raise Missing(f"no checkpoint found for the top graphs ({last})")

    def samples(self, p: Part) -> None:
        import torch
        p.text("Samples from every generator of the best graph (its best epoch's weights), "
               "all fed the same z: the same cell in every panel is the same latent point "
               "(the paper's Fig. 5).")
        self.need_trials()
        rank, r, trainer = self._best_trainer()
        self._trainer = (rank, r, trainer)
        if rank != 1:
            p.note(f"rank 1 has no checkpoint; showing rank {rank} (trial {r.trial_id})")
        k, nz = trainer.graph.k, trainer.config.nz
        n, nrow = 64, 8
        z = torch.randn(n, nz, generator=torch.Generator().manual_seed(SAMPLE_SEED))
        plt = _plt()
        fig, axes = plt.subplots(1, k, figsize=(3.3 * k, 3.7), squeeze=False)
        cmap = None
        for i in range(k):
            grid = _to_grid(trainer.sample(i, n, z=z), nrow)
            cmap = "gray" if grid.ndim == 2 else None
            ax = axes[0][i]
            ax.imshow(grid, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(f"G{i} ({trainer.graph.nodes[i].model})\nbest IS "
                         f"{_float(r.get(f'is_best_g{i}')):.{self.digits}f}", fontsize=9)
            ax.axis("off")
        fig.suptitle(f"trial {r.trial_id} (rank {rank}), best epoch {trainer.best_epoch}: "
                     f"same z for every generator", fontsize=10)
        fig.tight_layout(rect=(0, 0, 1, 0.95))
        p.basis(f"{n} samples per generator, trial {r.trial_id}.")
        p.image(_save(fig, self.folder, "samples.png"), "sample grid, same z")

    def tsne(self, p: Part) -> None:
        import numpy as np
        import torch
        from sklearn.manifold import TSNE
        p.text("t-SNE of samples from every generator of the best graph (same z for every "
               "generator) with real images for reference, on flattened pixels (the "
               "paper's Fig. 6). Overlapping clouds: the generators make similar images; "
               "a wider cloud: more variety.")
        self.need_trials()
        if getattr(self, "_trainer", None) is None:
            self._trainer = self._best_trainer()
        rank, r, trainer = self._trainer
        k, nz, m = trainer.graph.k, trainer.config.nz, TSNE_PER_SOURCE
        z = torch.randn(m, nz, generator=torch.Generator().manual_seed(SAMPLE_SEED + 1))
        feats, who = [], []
        for i in range(k):
            feats.append(trainer.sample(i, m, z=z).flatten(1).numpy())
            who += [f"G{i}"] * m
        real = _real_images(self.data(), m)
        feats.append(real.flatten(1).numpy())
        who += ["real"] * len(real)
        x = np.concatenate(feats).astype(np.float32)
        perplexity = min(30.0, (len(x) - 1) / 3)
        # one OpenMP thread: on a busy shared machine its spinning threads made a
        # 2-second t-SNE take 20 s and more
        from threadpoolctl import threadpool_limits
        with threadpool_limits(limits=1):
            emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0,
                       max_iter=500).fit_transform(x)
        plt = _plt()
        fig, ax = plt.subplots(figsize=(6, 5.2))
        who = np.array(who)
        colours = plt.get_cmap("tab10")
        sel = who == "real"
        ax.scatter(emb[sel, 0], emb[sel, 1], s=12, c="#bbbbbb", marker="x",
                   label="real images", alpha=0.8)
        for i in range(k):
            sel = who == f"G{i}"
            ax.scatter(emb[sel, 0], emb[sel, 1], s=14, color=colours(i), alpha=0.75,
                       label=f"G{i} ({trainer.graph.nodes[i].model})", edgecolors="none")
        ax.legend(fontsize=8, markerscale=1.5, loc="best", framealpha=0.85)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"t-SNE, trial {r.trial_id} (rank {rank}): {m} samples per generator",
                     fontsize=10)
        p.basis(f"{m} samples per generator and {len(real)} real images.")
        p.image(_save(fig, self.folder, "tsne.png"), "t-SNE of samples by generator")


def is_digits(values) -> int:
    """Decimals that tell the given IS values apart (3 to 6): an untrained run's IS
    values all read 1.000 at three."""
    vals = sorted({float(v) for v in values if v is not None and math.isfinite(float(v))})
    for d in range(3, 7):
        if len({f"{v:.{d}f}" for v in vals}) == len(vals):
            return d
    return 6


def _float(x: Any) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return x


def _param_label(name: str) -> str:
    if name.startswith("gate_"):
        return f"gate on {edge_label(name).replace('->', ' -> ')}"
    return name


def _boxes(ax, groups, labels, colours, positions=None, alpha=0.6) -> None:
    """Box plots with the trials as jittered dots; empty groups get an 'n=0' slot."""
    import numpy as np
    positions = positions if positions is not None else list(range(len(groups)))
    rng = np.random.default_rng(0)
    filled = [(g, pos, c) for g, pos, c in zip(groups, positions, colours) if len(g)]
    if filled:
        bp = ax.boxplot([g for g, _, _ in filled], positions=[q for _, q, _ in filled],
                        widths=0.6, patch_artist=True, showfliers=False,
                        medianprops=dict(color="k"))
        for box, (_, _, c) in zip(bp["boxes"], filled):
            box.set_facecolor(c)
            box.set_alpha(alpha)
        for g, q, c in filled:
            ax.scatter(q + rng.uniform(-0.15, 0.15, len(g)), g, s=10, color="k",
                       alpha=0.6, zorder=3)
    ax.set_xticks(positions)
    ax.set_xticklabels(labels)
    if positions:
        ax.set_xlim(min(positions) - 0.7, max(positions) + 0.7)


def _real_images(data, n: int):
    """Up to n real images in [-1, 1], a fixed random subset of the data set."""
    import torch
    total = len(data)
    idx = torch.randperm(total, generator=torch.Generator().manual_seed(SAMPLE_SEED))[:n]
    return data.to_float(idx)


# ---- the whole report --------------------------------------------------------------------
PARTS = (  # (key, title, Builder method), in report order
    ("ranking", "Ranked graphs", "ranked_table"),
    ("reevaluation", "Re-evaluation with many more samples", "reevaluation"),
    ("graphs", "The top graphs", "graph_pictures"),
    ("curves", "IS curves of the top graphs", "curves"),
    ("distributions", "Distributions of the objective", "distributions"),
    ("gates", "What matters: gate shares at the top", "gate_share_part"),
    ("importance", "What matters: parameter importances (Optuna)", "importance_part"),
    ("asha", "ASHA at a glance", "asha"),
    ("early-stops", "Do early stops predict the final rank?", "early_stops"),
    ("samples", "Samples of the best graph (same z)", "samples"),
    ("tsne", "t-SNE of the best graph's samples", "tsne"),
)


def build_report(run: str | Path, out: str | Path | None = None, top: int = 10,
                 reeval_top: int = 3, reeval_samples: int = 10_000, reeval: bool = True,
                 device: str = "auto", progress: bool = True, strict: bool = False,
                 only: list[str] | None = None, allow_external_storage: bool = False) -> Path:
    """Write `report.html`, `report.md` and the pictures to `out` (default RUN/report).

    `only` limits the report to some parts (keys of `PARTS`); `strict` re-raises a
    part's unexpected error instead of writing a note. KtgError for a directory that is
    not a run or a bad setting. Returns the folder."""
    keys = [k for k, _, _ in PARTS]
    bad = [k for k in (only or []) if k not in keys]
    if bad:
        raise KtgError(f"unknown report part {bad[0]!r}; valid: {', '.join(keys)}")
    for name, v, lo in (("top", top, 1), ("reeval_top", reeval_top, 1),
                        ("reeval_samples", reeval_samples, 10)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise KtgError(f"The value of `{name}` is {v!r}, but must be an integer "
                           f">= {lo}")
    view = open_run(run)
    from .outputs import building_folder, mark_report, report_folder, swap_in
    default = out is None
    out = report_folder(view.path / REPORT_DIR if default else out, view.path, default)
    tmp = building_folder(out)
    try:
        opts = Options(top=top, reeval_top=reeval_top, reeval_samples=reeval_samples,
                       reeval=reeval, device=device, progress=progress, strict=strict,
                       allow_external_storage=allow_external_storage)
        b = Builder(view, tmp, opts)
        _plt()
        import matplotlib
        # no "+1" offset on axes: an IS of 1.0004 reads as 1.0004
        with matplotlib.rc_context({"axes.formatter.useoffset": False}):
            for key, title, method in PARTS:
                if only is None or key in only:
                    b.part(key, title, getattr(b, method))
        title, intro = _intro(view)
        (tmp / "report.md").write_text(render_markdown(title, intro, b.parts))
        (tmp / "report.html").write_text(render_html(title, intro, b.parts))
        mark_report(tmp, view.path)
        swap_in(tmp, out, legacy=default)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _intro(view: RunView) -> tuple[str, list[str]]:
    c, df = view.cfg, view.results
    title = f"KTG search report: {view.name}"
    counts = df["status"].value_counts().to_dict() if "status" in df.columns else {}
    status = ", ".join(f"{v} {s}" for s, v in counts.items()) or "none finished yet"
    planned = c.get("num_trials", "?")
    size = view.info.get("space_size")
    lines = [
        f"Run `{view.path}`, created {view.info.get('created', '?')}; report written "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}.",
        f"Search: data set `{c.get('dataset')}` at {c.get('image_size')} px, k = "
        f"{c.get('k')} generators, gates {', '.join(map(str, c.get('gates', [])))}, "
        f"transfer {', '.join(map(str, c.get('transfer', [])))}, {planned} trials planned, "
        f"max {c.get('max_epochs')} epochs, ASHA grace {c.get('grace_period')} / "
        f"reduction {c.get('reduction_factor')}"
        + (f"; space size {size:,} graphs." if isinstance(size, int) else "."),
        f"Trials in the results table: {len(df)} of {planned} ({status}).",
    ]
    if len(df) < (planned if isinstance(planned, int) else 0):
        lines.append("The search is still running or was interrupted: this report shows "
                     "the trials finished so far.")
    return title, lines


# ---- CLI ---------------------------------------------------------------------------------
def add_report_parser(sub):
    """Add `ktg report` to the CLI's subparsers."""
    sp = sub.add_parser("report", help="write a ranked graph report (HTML + Markdown) for "
                                       "a run")
    sp.add_argument("run", help="a run directory (what `ktg search` prints as 'run dir')")
    sp.add_argument("-o", "--out", metavar="PATH",
                    help="output folder (default: RUN/report). It is replaced whole, so it "
                         "must be new, empty, or a report folder ktg wrote (marker file "
                         ".ktg-report); never the current directory, the run, or a link")
    sp.add_argument("--top", type=int, default=10, help="graphs in the ranked table and "
                    "pictures (default 10)")
    sp.add_argument("--reeval-top", type=int, default=3, help="top graphs to re-evaluate "
                    "(default 3)")
    sp.add_argument("--reeval-samples", type=int, default=10_000,
                    help="samples per generator in the re-evaluation (default 10000)")
    sp.add_argument("--no-reeval", action="store_true", help="skip the re-evaluation "
                    "(stored results are still shown)")
    sp.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (for the "
                    "re-evaluation and the samples)")
    sp.add_argument("--allow-external-storage", action="store_true",
                    help="open the Optuna study even when run.json places it outside the "
                         "run directory (your own cluster's PostgreSQL)")
    sp.add_argument("--only", nargs="+", metavar="PART", choices=[k for k, _, _ in PARTS],
                    help="build only these parts: " + ", ".join(k for k, _, _ in PARTS))
    sp.set_defaults(func=cmd_report)
    return sp


def cmd_report(args) -> int:
    out = build_report(args.run, out=args.out, top=args.top, reeval_top=args.reeval_top,
                       reeval_samples=args.reeval_samples, reeval=not args.no_reeval,
                       device=args.device, only=args.only,
                       allow_external_storage=args.allow_external_storage)
    print(f"wrote {out / 'report.html'} and {out / 'report.md'}")
    return 0

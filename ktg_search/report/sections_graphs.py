"""Sections: what the top graphs are and how they trained. Graph pictures (the paper's
Fig. 8), IS curves per epoch, and the objective's distribution by transfer kind and by
the gate on each D -> t edge (Fig. 7)."""
from __future__ import annotations

from ..registry import OBJECTIVES
from .context import (Options, graph_of, need_trials, searched_gates, section, top_digits,
                      top_trials)
from .figures import boxes, curves_figure, draw_graph, gate_colour, graph_figsize, plt, png
from .render import Part
from .run import Missing, RunView
from .tables import as_float, edge_columns, edge_label, is_d_column


@section('graphs', 'The top graphs')
def graphs(run: RunView, opts: Options, p: Part) -> None:
    """One picture per top graph, `graph_01.png` for rank 1 and so on."""
    p.text("Each top graph like the paper's Fig. 8: D and the generators (model, best "
           "IS over the epochs), one arrow s -> t per non-cutoff edge (the loss of that "
           "edge trains t), coloured by gate. Cutoff edges are not drawn.")
    need_trials(run)
    pyplot = plt()
    digits = top_digits(run, opts)
    items = []
    for rank, (_, r) in enumerate(top_trials(run, opts).iterrows(), start=1):
        try:
            g = graph_of(r)
        except Missing as e:
            p.note(f"rank {rank}: {e}")
            continue
        best = [as_float(r.get(f"is_best_g{i}")) for i in range(g.k)]
        fig, ax = pyplot.subplots(figsize=graph_figsize(g.k))
        draw_graph(ax, g, best, f"#{rank}  trial {r.trial_id}\nobjective "
                   f"{r.objective:.{digits}f}  transfer {g.transfer}",
                   gates=searched_gates(run), digits=min(digits, 4))
        items.append((p.file(f"graph_{rank:02d}.png", png(fig)),
                      f"graph of rank {rank}, trial {r.trial_id}"))
    if not items:
        raise Missing("no top graph could be drawn")
    p.basis(f"the top {len(items)} ranked trial(s).")
    p.gallery(items)


@section('curves', 'IS curves of the top graphs')
def curves(run: RunView, opts: Options, p: Part) -> None:
    """IS per epoch of every generator of the top graphs."""
    p.text("IS per epoch of every generator of the top graphs (from `history.parquet`; "
           "the star marks the best epoch, whose value is the objective).")
    need_trials(run)
    h = run.history
    top = top_trials(run, opts)
    if h.empty:
        raise Missing("history.parquet is missing or empty: no per-epoch values yet")
    cols = [f"is_g{i}" for i in range(run.k) if f"is_g{i}" in h.columns]
    if not cols:
        raise Missing("the history has no `is_g*` columns")
    fig = curves_figure(top, h, cols, run.cfg.train.epochs)
    p.basis(f"{len(h[h.trial_id.isin(top.trial_id)])} epoch rows of the top {len(top)} "
            f"trial(s).")
    p.image(p.file("curves.png", png(fig)), "IS per epoch of the top graphs")


@section('distributions', 'Distributions of the objective')
def distributions(run: RunView, opts: Options, p: Part) -> None:
    """Box plots of every ranked trial's objective, by transfer kind and by D-edge gate."""
    p.text("The objective of every ranked trial, by transfer kind (the paper's Fig. 7) "
           "and by the gate on each D -> t edge. Box: quartiles and median; dots: "
           "trials.")
    need_trials(run)
    r = run.ranked
    dcols = [c for c in edge_columns(r) if is_d_column(c)]
    kinds = [t for t in dict.fromkeys(r.get("transfer", []).tolist()) if t]
    fig, (a1, a2) = plt().subplots(1, 2, figsize=(11, 4), sharey=True,
                                   gridspec_kw={"width_ratios": [max(1, len(kinds)),
                                                                 max(2, len(dcols) * 2)]})
    groups = [r[r.transfer == t].objective.dropna().values for t in kinds]
    boxes(a1, groups, [f"{t}\n(n={len(v)})" for t, v in zip(kinds, groups, strict=True)],
          ["#8fb8de"] * len(groups))
    a1.set_title("by transfer kind", fontsize=10)
    a1.set_ylabel(f"objective ({OBJECTIVES.help(run.cfg.train.objective)})")
    if len(kinds) == 1:
        a1.set_xlabel("(this search used one transfer kind)", fontsize=8)
    gates = [g for g in searched_gates(run) if any((r[c] == g).any() for c in dcols)]
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
    boxes(a2, data, labels, colours, positions=pos, alpha=0.45)
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
    p.image(p.file("distributions.png", png(fig)),
            "objective by transfer kind and by D-edge gate")

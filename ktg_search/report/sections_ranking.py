"""Sections: which graphs won and by how much. The ranked table, and the top graphs
re-scored with many more samples (reevaluation.py computes and stores them)."""
from __future__ import annotations

import math

from ..registry import OBJECTIVES
from ..method.scoring import objective_rule
from ..results.verdict import searching_paid
from .context import Options, need_trials, section, top_digits, top_trials
from .figures import plt, png
from .reevaluation import REEVAL_FILE, reevaluate, stored_reevaluations
from .render import Part, fmt
from .run import Missing, RunView
from .tables import as_float, is_digits


def _vol(v: float) -> str:
    """A VoL: real images' are hundreds to thousands, a barely trained generator's < 1."""
    return f"{v:.4g}" if math.isfinite(v) else ""


@section('ranking', 'Ranked graphs')
def ranking(run: RunView, opts: Options, p: Part) -> None:
    """The top trials by objective, with each generator's IS and FID."""
    k = run.k
    c = run.cfg
    scored = "node 0, the target" if c.space.target_node else "the generators"
    p.text(f"Ranking rule: trials are ranked by `objective` = "
           f"{objective_rule(c.train.objective)}; IS = inception score, over {scored}. "
           f"Each IS was computed on "
           f"{c.train.eval_samples} samples per generator during the search; "
           f"see the re-evaluation below for many more. Duplicates (the same graph up "
           f"to renumbering, not retrained) are left out and point at their originals.")
    need_trials(run)
    df, top = run.results, top_trials(run, opts)
    paid = searching_paid(df.to_dict("records"))
    if paid:
        p.text(f"**{paid}** Baselines (search setting `baselines`) train with the "
               f"search's recipe and budget and are never stopped early.")
    dup = df[df.status == "duplicate"] if "status" in df.columns else df.iloc[0:0]
    unranked = len(df) - len(dup) - len(run.ranked)
    p.basis(f"{len(run.ranked)} ranked trial(s) of {len(df)} in the table "
            f"({len(dup)} duplicate(s), {unranked} without an objective); "
            f"showing the top {len(top)}.")
    # the KD paper's sharpness, where the results table has it (tables before it do not)
    vols = [i for i in range(k) if f"vol_g{i}" in df.columns and df[f"vol_g{i}"].notna().any()]
    headers = ["rank", "trial", "objective"] + [f"IS G{i}" for i in range(k)] + \
        [f"FID G{i}" for i in range(k)] + [f"VoL G{i}" for i in vols] + \
        ["best epoch", "epochs", "status", "key"]
    rows = []
    d = top_digits(run, opts)
    for rank, (_, r) in enumerate(top.iterrows(), start=1):
        base = r.get("baseline")
        trial = f"{r.trial_id} (baseline {base})" if isinstance(base, str) and base \
            else r.trial_id
        rows.append([rank, trial, f"{r.objective:.{d}f}"] +
                    [fmt(as_float(r.get(f"is_best_g{i}")), d) for i in range(k)] +
                    [as_float(r.get(f"fid_g{i}")) for i in range(k)] +
                    [_vol(as_float(r.get(f"vol_g{i}"))) for i in vols] +
                    [int(r.best_epoch), int(r.epochs), r.status, r.graph_key])
    p.table(headers, rows)
    p.text(f"`IS Gi` is generator i's best IS over the epochs; `FID Gi` its FID at the "
           f"trial's best epoch (lower is better); "
           + ("`VoL Gi` its Variance of Laplacian at that epoch (the KD paper's sharpness, "
              "higher is sharper; data/sharpness.py); " if vols else "") +
           f"`epochs` = epochs trained (ASHA "
           f"stops weak trials early; max {c.train.epochs}).")
    if len(dup):
        pairs = ", ".join(f"{a} -> {b}" for a, b in
                          zip(dup.trial_id.head(12), dup.duplicate_of.head(12),
                              strict=True))
        p.text(f"Duplicates left out (duplicate -> original): {pairs}"
               f"{' ...' if len(dup) > 12 else ''}.")


@section('reevaluation', 'Re-evaluation with many more samples')
def reevaluation(run: RunView, opts: Options, p: Part) -> None:
    """The top graphs re-scored with `opts.reeval_samples` samples (or, with
    `opts.reeval` off, what is stored), beside their search rank."""
    o = opts
    p.text(f"The best checkpoints (the weights of each trial's best epoch) of the top "
           f"{o.reeval_top} graphs re-scored with {o.reeval_samples:,} samples per "
           f"generator (fresh z, not the search's), for IS and FID. A graph that won "
           f"on a lucky small sample drops here. Stored in `{REEVAL_FILE}` in the run "
           f"directory and reused by later reports.")
    need_trials(run)
    if not o.reeval:
        rows = stored_reevaluations(run, o.reeval_top, o.reeval_samples)
        notes = ["--no-reeval: showing stored rows"]
    else:
        rows, notes = reevaluate(run, o.reeval_top, o.reeval_samples,
                                 device=o.device, progress=o.progress, data=run.data())
    for n in notes:
        p.note(n)
    if rows.empty:
        raise Missing("no top graph could be re-evaluated")
    k = run.k
    p.basis(f"{len(rows)} graph(s) x {k} generator(s) x "
            f"{int(rows.num_samples.iloc[0]):,} samples each.")
    headers = ["search rank", "re-eval rank", "trial", "objective (search)",
               "objective (re-eval)"] + [f"IS G{i} (± std)" for i in range(k)] + \
        [f"FID G{i}" for i in range(k)] + (["IS mixture (± std)"] if k > 1 else []) + \
        ["samples"]
    table = []
    d = is_digits(list(rows.objective) + list(rows.search_objective))
    for _, r in rows.iterrows():
        table.append([int(r.search_rank), int(r.reeval_rank), r.trial_id,
                      f"{r.search_objective:.{d}f}", f"{r.objective:.{d}f}"] +
                     [f"{r[f'is_g{i}']:.{d}f} ± {as_float(r.get(f'is_std_g{i}')):.{d}f}"
                      for i in range(k)] +
                     [as_float(r.get(f"fid_g{i}")) for i in range(k)] +
                     ([_pm(r.get("is_mix"), r.get("is_std_mix"), d)] if k > 1 else []) +
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
    fig = _reevaluation_figure(rows, run.scored_nodes, run.cfg.train.eval_samples,
                               run.cfg.train.objective)
    p.image(p.file("reevaluation.png", png(fig)),
            "search objective against re-evaluated objective")


def _pm(value, std, d: int) -> str:
    """'v ± s', or '-' where a row has no value (stored before the column existed)."""
    v = as_float(value)
    return f"{v:.{d}f} ± {as_float(std):.{d}f}" if math.isfinite(v) else "-"


def _objective_std(r, nodes: list[int]) -> float:
    """The std of a re-evaluated objective over the scored `nodes`: that of the generator
    (or the mixture) whose IS the objective is (a rule that picks one, as best, weakest
    and mixture do); else, as for the mean, that of the mean of independent estimates."""
    if len(nodes) > 1 and as_float(r.get("is_mix")) == r.objective:
        return as_float(r.get("is_std_mix"))
    for i in nodes:
        if r[f"is_g{i}"] == r.objective:
            return as_float(r.get(f"is_std_g{i}"))
    return math.sqrt(sum(as_float(r.get(f"is_std_g{i}")) ** 2 for i in nodes)) / len(nodes)


def _reevaluation_figure(rows, nodes: list[int], eval_samples, objective: str):
    """Each re-evaluated graph on one line: its search objective, and the re-evaluated
    one with the objective's IS std as error bar."""
    fig, ax = plt().subplots(figsize=(7, 1.4 + 0.55 * len(rows)), layout="constrained")
    y = list(range(len(rows)))[::-1]
    ax.scatter(rows.search_objective, y, marker="o", s=50, color="#777",
               label=f"search ({eval_samples} samples, best epoch)", zorder=3)
    err = [_objective_std(r, nodes) for _, r in rows.iterrows()]
    ax.errorbar(rows.objective, y, xerr=[0 if math.isnan(e) else e for e in err],
                fmt="D", color="#d62728", ms=7, capsize=4, zorder=4,
                label=f"re-evaluation ({int(rows.num_samples.iloc[0]):,} samples, ± std)")
    for yy, (_, r) in zip(y, rows.iterrows(), strict=True):
        ax.plot([r.search_objective, r.objective], [yy, yy], color="#ccc", zorder=1)
    ax.set_yticks(y)
    ax.set_yticklabels([f"#{int(r.search_rank)} {r.trial_id} -> #{int(r.reeval_rank)}"
                        for _, r in rows.iterrows()], fontsize=8)
    ax.set_xlabel(f"objective: {OBJECTIVES.help(objective)}")
    ax.set_ylim(-0.7, len(rows) - 0.3)
    fig.legend(fontsize=8, loc="outside lower center", ncol=2, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Search rank -> re-evaluated rank", fontsize=10)
    return fig

"""Sections: what matters. Each gate's share among the best trials against all of them
(a heat map and its table), and Optuna's parameter importances on the stored study."""
from __future__ import annotations

import math
from pathlib import Path

from ..errors import KtgError
from .context import Options, need_trials, searched_gates, section
from .figures import plt, png
from .render import Part
from .run import Missing, RunView
from .tables import TOP_FRAC, gate_shares, is_d_column, param_label


@section('gates', 'What matters: gate shares at the top')
def gate_share(run: RunView, opts: Options, p: Part) -> None:
    """The share of each gate on each edge among the top `TOP_FRAC` against all."""
    p.text(f"For every edge: the share of each gate among the top "
           f"{TOP_FRAC:.0%} of ranked trials (by objective) against all ranked trials. "
           f"A gate that is much more common at the top than overall is what the best "
           f"graphs have in common on that edge.")
    need_trials(run)
    shares = gate_shares(run.results, TOP_FRAC, searched_gates(run) or None)
    if shares.empty:
        raise Missing("the results table has no gate columns")
    n_top, n = int(shares.top_n.iloc[0]), int(shares.all_n.iloc[0])
    p.basis(f"top group: {n_top} trial(s) (ceil of {TOP_FRAC:.0%} of {n}, at least "
            f"one); all: {n} ranked trial(s)." +
            (" With so few trials at the top, the top shares are anecdotes."
             if n_top < 5 else ""))
    p.image(p.file("gate_shares.png", png(_heat_map(shares, n_top, n))),
            "gate share heat map")
    rows = [[r.edge, r.gate, f"{r.top_share:.2f} ({r.top_count}/{r.top_n})",
             f"{r.all_share:.2f} ({r.all_count}/{r.all_n})",
             f"{r.top_share - r.all_share:+.2f}"] for r in shares.itertuples()]
    p.table(["edge", "gate", f"share in top {TOP_FRAC:.0%}", "share in all",
             "difference"], rows)


def _heat_map(shares, n_top: int, n: int):
    """Three panels, edges by gates: shares at the top, over all, and their difference."""
    edges = list(dict.fromkeys(shares.edge))
    gates = list(dict.fromkeys(shares.gate))
    top = shares.pivot(index="edge", columns="gate", values="top_share") \
        .loc[edges, gates]
    allv = shares.pivot(index="edge", columns="gate", values="all_share") \
        .loc[edges, gates]
    fig, axes = plt().subplots(1, 3, figsize=(3.0 + 3.3 * len(gates),
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
    return fig


@section('importance', 'What matters: parameter importances (Optuna)')
def importance(run: RunView, opts: Options, p: Part) -> None:
    """Optuna's PED-ANOVA importances of the searched parameters, on the run's study."""
    import optuna
    p.text("Each searched parameter's importance for the objective, from Optuna's "
           "PED-ANOVA importance evaluator (`optuna.importance.get_param_importances` "
           "with `PedAnovaImportanceEvaluator`, passed explicitly: Optuna's default "
           "before version 5 was fANOVA) run on the stored study. Parameters: one gate "
           "per edge (`gate_s_t` is the gate on s -> t), and the models / transfer kind "
           "when they are searched.")
    study = _open_study(run, opts)
    complete = study.get_trials(deepcopy=False,
                                states=(optuna.trial.TrialState.COMPLETE,))
    n_all = len(study.get_trials(deepcopy=False))
    name = study.study_name
    p.basis(f"{len(complete)} COMPLETE trial(s) of {n_all} in study {name!r} (ASHA's "
            f"early-stopped trials count as COMPLETE with the value at the stop; "
            f"duplicates count with their original's value).")
    if len(complete) < 2:
        raise Missing(f"Optuna's importance evaluator needs at least 2 complete trials; "
                      f"the study has {len(complete)}")
    # pyproject asks for optuna >= 3.6, the first release with PED-ANOVA
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    ev_name = type(evaluator).__name__
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
    fig = _importance_bars(values, f"Optuna parameter importances ({ev_name}, "
                                   f"{len(complete)} trials)")
    p.image(p.file("importances.png", png(fig)), "parameter importances")
    p.table(["parameter", "edge / meaning", "importance"],
            [[nm, param_label(nm), values[nm]] for nm in values])


def _open_study(run: RunView, opts: Options):
    """The run's Optuna study, read only; Missing when run.json names none, names one
    outside the run (unless allowed) or the study does not exist yet."""
    import optuna
    info = run.info
    url, name = info.get("storage"), info.get("study_name")
    if not url or not name:
        raise Missing("run.json names no Optuna storage or study")
    from ..search.runinfo import own_study_storage
    url, inside = own_study_storage(url, run.path)
    if not inside and not opts.allow_external_storage:
        raise Missing(f"run.json names a study outside the run directory ({url!r}); a "
                      f"shared run must not make the report connect elsewhere: with "
                      f"--allow-external-storage it is opened")
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///"):])
        if not db.exists():  # opening it would create an empty database in the run
            raise Missing(f"the Optuna study's database {str(db)!r} does not exist yet "
                          f"(no trial has started)")
        from ..files.schemas import check_study_database
        try:  # read-only and bounded: an empty file, a view or a link is not opened
            check_study_database(db)
        except KtgError as e:
            raise Missing(str(e)) from None
    from ..search.study import open_optuna_storage
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        return optuna.load_study(study_name=name, storage=open_optuna_storage(url))
    except KeyError:
        raise Missing(f"the Optuna storage holds no study {name!r} yet") from None


def _importance_bars(values: dict[str, float], title: str):
    """One bar per parameter, most important on top; D edges red, other edges blue."""
    names = list(values)[::-1]
    fig, ax = plt().subplots(figsize=(6.5, 0.8 + 0.38 * len(names)))
    vals = [values[nm] for nm in names]
    colours = ["#d62728" if is_d_column(nm) else "#1f77b4"
               if nm.startswith("gate_") else "#7f7f7f" for nm in names]
    ax.barh(range(len(names)), vals, color=colours)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([param_label(nm) for nm in names], fontsize=9)
    for yi, v in enumerate(vals):
        ax.text(v, yi, f" {v:.3f}", va="center", fontsize=8)
    ax.set_xlim(0, max(vals + [1e-9]) * 1.2)
    ax.set_xlabel("importance (sums to 1)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig

"""Section: the best searched graphs against the baselines of a `ktg compare` folder
(`--baselines DIR`), with whether the two trained alike (baselines.py reads the folder)."""
from __future__ import annotations

import math

from ..errors import KtgError
from ..method.scoring import objective_best
from .baselines import RECIPE, graph_key, read_baselines, recipe_differences, run_config
from .context import Options, need_trials, section
from .render import Part
from .run import Missing, RunView
from .tables import as_float, paper_ordering

TOP_SEARCHED = 3  # the searched graphs set against the baselines


def _pm(mean: float, std: float) -> str:
    return "" if not math.isfinite(mean) else \
        f"{mean:.4f} ± {std:.4f}" if math.isfinite(std) else f"{mean:.4f}"


@section("baselines", "Searched graphs against the baselines")
def baselines(run: RunView, opts: Options, p: Part) -> None:
    """The top searched graphs by objective next to the compare table's rows; the
    compare runs of a searched graph (same graph up to renumbering) get rows too."""
    p.text("The best graphs of this search (the top 3 by the run's objective, one "
           "training run each; shown: the best generator's best IS at any epoch, as "
           "compare scores a run, whatever the objective) next to the rows of a "
           "`ktg compare` table (the best generator's IS at its best epoch, mean ± std "
           "over seeds). The two are only comparable when they trained alike: the "
           "settings that differ are listed below. The mixture column is what the "
           "learning generators model together (images drawn from each in turn; a "
           "single learner is its own mixture): MAD-GAN's D makes its generators split "
           "the data, so each one's IS can trail a single generator's while their "
           "mixture does not.")
    if opts.baselines is None:
        raise Missing("no compare folder given (`ktg report RUN --baselines DIR`)")
    try:
        base = read_baselines(opts.baselines)
    except KtgError as e:
        raise Missing(str(e)) from None
    need_trials(run)
    table = base.table
    top = run.ranked.head(TOP_SEARCHED)
    keys = {str(r.graph_key): rank for rank, (_, r) in enumerate(top.iterrows(), start=1)}
    # which compare graphs are searched graphs: every seed of a label trains one graph
    retrained = {}
    for label, dirs in base.runs.items():
        try:
            key = graph_key(dirs[0])
        except (KtgError, OSError) as e:
            p.note(f"compare graph {label!r}: its graph.json cannot be read ({e})")
            continue
        if key in keys:
            retrained[label] = keys[key]
    eval_at = str(table["eval_at"].iloc[0])
    p.basis(f"{len(table)} compare graph(s), {int(table.seeds.sum())} run(s) in "
            f"`{base.path}` (scored at the {eval_at} epoch); the top {len(top)} of "
            f"{len(run.ranked)} ranked trial(s).")
    rows = []
    for rank, (_, r) in enumerate(top.iterrows(), start=1):
        rows.append([f"search #{rank}", f"trial {r.trial_id} ({r.graph_key})",
                     # the best generator's best IS, as a compare row scores a run,
                     # whichever rule the search ranked by
                     _pm(objective_best([as_float(r.get(f"is_best_g{i}"))
                                         for i in run.scored_nodes]), float("nan")),
                     # NaN (shown "-") for one learning generator, or a run from before
                     # the mixture was measured
                     _pm(as_float(r.get("is_mix_best")), float("nan")) or "-",
                     1, int(r.epochs)])
    for _, r in table.iterrows():
        what = f"compare: searched #{retrained[r.graph]}" if r.graph in retrained \
            else "compare (baseline)"
        # compare tables written before the mixture was measured have no such columns
        mix = _pm(as_float(r.get("is_mix_mean")), as_float(r.get("is_mix_std"))) or "-"
        rows.append([what, r.graph, _pm(as_float(r.is_mean), as_float(r.is_std)), mix,
                     int(r.seeds), int(r.epochs)])
    p.table(["source", "graph", "IS of the best generator (mean ± std)",
             "IS of the mixture (mean ± std)", "seeds", "epochs"], rows)
    if not retrained:
        p.text("The folder holds no run of the searched graphs: the searched numbers are "
               "single runs from the search, the baselines' means over seeds.")
    _ordering(table, set(retrained), p)
    _recipe(run, base, p)


def _ordering(table, searched: set[str], p: Part) -> None:
    """The paper's Table 1 ordering on the compare rows, link by link."""
    links = paper_ordering([(str(r.graph), as_float(r.is_mean), as_float(r.is_std))
                            for _, r in table.iterrows()], searched)
    if not links:
        p.note("The compare folder has no two steps of the paper's ordering (DCGAN <= +SN "
               "<= MAD-GAN <= through <= searched: dcgan, dcgan-sn, mad-gan-*, through-*, "
               "a searched graph), so it is not checked.")
        return
    p.text("The paper's Table 1 ordering, DCGAN <= +SN <= MAD-GAN <= through <= searched, "
           "checked on the compare rows: the difference of the mean IS and that difference "
           "in pooled std (sqrt(std_a^2 + std_b^2)); it holds at >= 1 std and is reversed at "
           "<= -1 std.")
    p.table(["link", "lower", "upper", "difference", "in std", "verdict"],
            [[x["link"], x["lower"], x["upper"], f"{x['diff']:+.2f}",
              f"{x['std_units']:+.1f}", x["verdict"]] for x in links])


def _recipe(run: RunView, base, p: Part) -> None:
    """Say whether the compare runs trained with the search's recipe and seeds."""
    mine = run.cfg.train  # what every trial trained with (checked when the run was read)
    configs, unread = {}, []
    for label, dirs in base.runs.items():
        for d in dirs:
            try:
                configs[f"{label}/{d.name}"] = run_config(d)
            except (KtgError, OSError) as e:
                unread.append(f"{label}/{d.name} ({e})")
    if unread:
        p.note(f"training settings not readable for {len(unread)} compare run(s): "
               + "; ".join(unread[:3]) + (" ..." if len(unread) > 3 else ""))
    if not configs:
        raise Missing("no compare run's training settings could be read: whether the "
                      "recipes match is unknown")
    diffs = recipe_differences(mine, configs)
    if diffs:
        p.note(f"The recipes differ on {len(diffs)} setting(s): the searched and the "
               f"baseline numbers are not measured alike.")
        p.table(["setting", "search", "baselines", "runs that differ"],
                [[d["label"], repr(d["search"]), ", ".join(d["baselines"]),
                  f"{d['runs']} of {d['of']}"] for d in diffs])
    else:
        p.text(f"Same recipe: every one of the {len(configs)} compare run(s) trained with "
               f"the search's settings (" + ", ".join(label for _, label in RECIPE) + ").")
    seeds = sorted({c.seed for c in configs.values()})
    p.text(f"Seeds: every search trial trained once, with seed {mine.seed}; the compare "
           f"runs used seed(s) {', '.join(map(str, seeds))}"
           + (" (the search's seed among them)." if mine.seed in seeds else
              " (not the search's)."))

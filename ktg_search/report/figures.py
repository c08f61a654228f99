"""The report's drawing primitives: matplotlib set-up, a graph, a panel of curves, box
plots and an image grid.

A section draws its own one-off chart from these (sections_*.py); what more than one
picture needs, or what is worth reading on its own (the graph layout), lives here.
Edge `s -> t` (DESIGN.md): the arrow goes from s to t, the edge's loss trains t.
"""
from __future__ import annotations

import math
from typing import Any

from ..files.pictures import plt, png  # noqa: F401 (the sections draw with them)

# Gate colours: the paper's Fig. 8 draws through in black and positive linear in red.
GATE_COLOURS = {"through": "#222222", "linear_up": "#d62728", "linear_down": "#1f77b4",
                "correct": "#2ca02c", "cutoff": "#bbbbbb"}
_EXTRA_COLOURS = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#ff7f0e"]


def gate_colour(gate: str) -> str:
    """The colour of a gate's arrows and boxes; a gate the table does not name gets a
    stable one from its name."""
    if gate in GATE_COLOURS:
        return GATE_COLOURS[gate]
    return _EXTRA_COLOURS[sum(map(ord, gate)) % len(_EXTRA_COLOURS)]


NODE_W, NODE_H, ARC_MARGIN = 1.0, 0.5, 0.42


def graph_figsize(k: int) -> tuple[float, float]:
    """Inches for `draw_graph`: the same scale (1.45 in per data unit) for every k."""
    pos = _layout(k)
    xs = [x for x, _ in pos.values()]
    ys = [y for _, y in pos.values()]
    wide = max(xs) - min(xs) + NODE_W + 2 * ARC_MARGIN
    high = max(ys) - min(ys) + NODE_H + 2 * ARC_MARGIN
    return 1.45 * max(wide, 3.2), 1.45 * high + 1.3  # title and legend


def _layout(k: int, m: int = 1) -> dict[Any, tuple[float, float]]:
    """Generators on a circle (G0 on the left, then clockwise), D in the middle; several
    discriminators on a small inner circle, D_j toward G_j."""
    radius = {1: 1.0, 2: 1.35, 3: 1.2}.get(k, 0.33 * k + 0.2)
    angles = [math.pi - 2 * math.pi * i / k for i in range(k)] if k > 1 else [math.pi / 2]
    pos: dict[Any, tuple[float, float]] = {i: (radius * math.cos(a), radius * math.sin(a))
                                           for i, a in enumerate(angles)}
    if m == 1:
        pos["D"] = (0.0, 0.0)
        return pos
    inner = [math.pi - 2 * math.pi * j / m for j in range(m)]
    r = max(0.3, 0.2 / math.sin(math.pi / m))  # neighbouring D circles (0.17) never touch
    for j, a in enumerate(inner):
        pos[f"D{j}"] = (r * math.cos(a), r * math.sin(a))
    return pos


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
    pair are two arcs. Nodes carry the model name and the best IS. Several
    discriminators: each D_j is its own node, its edges gated like every other."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch
    k, m = graph.k, getattr(graph, "discriminators", 1)
    pos = _layout(k, m)
    frozen, dead = set(graph.frozen_nodes()), set(graph.dead_nodes())
    w, h = NODE_W, NODE_H
    patches: dict[Any, Any] = {}
    for name in (["D"] if m == 1 else [f"D{j}" for j in range(m)]):  # every D node
        d = Circle(pos[name], 0.17, fc="#fde0d0", ec="#a0522d", lw=1.5, zorder=3)
        ax.add_patch(d)
        ax.text(*pos[name], name, ha="center", va="center",
                fontsize=12 if m == 1 else 9, fontweight="bold", zorder=4)
        patches[name] = d
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
        rad = 0.0 if isinstance(s, str) else _bend(pos[s], pos[t], other_way=s > t)
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


def curves_figure(top, history, cols: list[str], max_epochs: int):
    """One panel per trial of `top` (best first): each `cols` value (`is_g*`) per epoch
    from `history`, and a hollow star at the trial's best epoch. Returns the figure."""
    pyplot = plt()
    n = len(top)
    ncol = min(5, n)
    nrow = math.ceil(n / ncol)
    fig, axes = pyplot.subplots(nrow, ncol, figsize=(3.0 * ncol, 2.5 * nrow + 0.6),
                                sharey=True, squeeze=False)
    colours = pyplot.get_cmap("tab10")
    for j, (_, r) in enumerate(top.iterrows()):
        ax = axes[j // ncol][j % ncol]
        ht = history[history.trial_id == r.trial_id].sort_values("epoch")
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
        ax.set_xlim(0.5, max(2, max_epochs + 0.5))
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
    return fig


def boxes(ax, groups, labels, colours, positions=None, alpha=0.6) -> None:
    """Box plots with the trials as jittered dots; empty groups get an 'n=0' slot."""
    import numpy as np
    positions = positions if positions is not None else list(range(len(groups)))
    rng = np.random.default_rng(0)
    filled = [(g, pos, c) for g, pos, c in zip(groups, positions, colours, strict=True)
              if len(g)]
    if filled:
        bp = ax.boxplot([g for g, _, _ in filled], positions=[q for _, q, _ in filled],
                        widths=0.6, patch_artist=True, showfliers=False,
                        medianprops=dict(color="k"))
        for box, (_, _, c) in zip(bp["boxes"], filled, strict=True):
            box.set_facecolor(c)
            box.set_alpha(alpha)
        for g, q, c in filled:
            ax.scatter(q + rng.uniform(-0.15, 0.15, len(g)), g, s=10, color="k",
                       alpha=0.6, zorder=3)
    ax.set_xticks(positions)
    ax.set_xticklabels(labels)
    if positions:
        ax.set_xlim(min(positions) - 0.7, max(positions) + 0.7)


def to_grid(images, nrow: int):
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

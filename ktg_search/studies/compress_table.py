"""`ktg compress`'s outputs, from the run files alone: the table (OUT/table.md,
OUT/table.csv), the paper's Fig. 1 (OUT/fig1.png) and a sample grid per width
(OUT/samples_w<d>.png).

Per (scheme, width), over the seeds (mean +- sample std, n - 1): the student's best IS,
its FID at that epoch and its VoL at that epoch divided by the teacher's VoL (teacher.json:
the teacher's own generator on the same fixed z). Parameters are the student's
(`summary.json`'s `params`), the compression ratio is the teacher's parameters over the
student's.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..files.pictures import plt as pyplot, png
from ..files.fileio import TABLE_CSV, TABLE_MD, atomic_write_bytes, atomic_write_text
from ..method.scoring import difference_in_std, mean_std

COLOURS = {"mse": "#1f77b4", "joint": "#d62728", "gan": "#2ca02c"}
KEEP = 0.8  # the paper's headline: a student that keeps 83% of the teacher's IS at 1,669:1


def _student(scheme: str) -> int:
    return 0 if scheme == "gan" else 1


def table_rows(jobs: list, teacher: dict) -> list[dict[str, Any]]:
    """One row for the teacher, then one per (scheme, width) in the jobs' order."""
    groups: dict[tuple[str, int], list] = {}
    for j in jobs:
        groups.setdefault((j.scheme, j.width), []).append(j)
    rows = [{"scheme": "teacher", "width": teacher["width"], "model": teacher["model"],
             "params": teacher["params"], "compression": 1.0, "seeds": 0,
             "is_mean": teacher["is"], "is_std": float("nan"), "fid_mean": teacher["fid"],
             "fid_std": float("nan"), "vol_mean": teacher["vol"], "vol_std": float("nan"),
             "vol_ratio_mean": 1.0, "vol_ratio_std": float("nan"), "runs": ""}]
    for (scheme, width), group in groups.items():
        i = _student(scheme)
        summaries = [json.loads((j.run_dir / "summary.json").read_text()) for j in group]
        params = int(summaries[0]["params"][i])
        is_ = [float(s["best_is"][i]) for s in summaries]
        fid = [float(s["fid_at_best"][i]) for s in summaries]
        vol = [float((s.get("vol_at_best") or [math.nan] * (i + 1))[i]) for s in summaries]
        ratio = [v / teacher["vol"] if teacher["vol"] else math.nan for v in vol]
        row = {"scheme": scheme, "width": width, "model": f"dcgan-w{width}",
               "params": params, "compression": teacher["params"] / params,
               "seeds": len(summaries)}
        for name, values in (("is", is_), ("fid", fid), ("vol", vol), ("vol_ratio", ratio)):
            row[f"{name}_mean"], row[f"{name}_std"] = mean_std(values)
        row["runs"] = ";".join(f"{j.run_dir.parent.name}/{j.run_dir.name}" for j in group)
        rows.append(row)
    return rows


def _pm(m: float, s: float, digits: int) -> str:
    if not math.isfinite(m):
        return "-"
    return f"{m:.{digits}f}" + (f" +- {s:.{digits}f}" if math.isfinite(s) else "")


def markdown(rows: list[dict], caption: str) -> str:
    lines = [caption, "", "| scheme | width d | parameters | compression | IS | FID | "
             "VoL / teacher's |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        d = "-" if r["width"] is None else str(r["width"])
        name = "teacher" if r["scheme"] == "teacher" else r["scheme"]
        lines.append(f"| {name} | {d} | {r['params']:,} | {r['compression']:.1f}:1 | "
                     f"{_pm(r['is_mean'], r['is_std'], 3)} | "
                     f"{_pm(r['fid_mean'], r['fid_std'], 2)} | "
                     f"{_pm(r['vol_ratio_mean'], r['vol_ratio_std'], 3)} |")
    return "\n".join(lines)


def keep_point(rows: list[dict], scheme: str, keep: float = KEEP) -> dict[str, Any] | None:
    """Where the scheme's mean IS falls below `keep` x the teacher's, walking from the
    smallest compression ratio up: the last ratio that keeps it, the first that does not,
    and the crossing interpolated linearly in log(ratio) between the two (None when every
    or no measured ratio keeps it: the point lies outside the study). None without rows."""
    teacher = rows[0]
    target = keep * teacher["is_mean"]
    pts = sorted((r["compression"], r["is_mean"], r["width"]) for r in rows
                 if r["scheme"] == scheme and math.isfinite(r["is_mean"]))
    if not pts:
        return None
    kept = [p for p in pts if p[1] >= target]
    lost = [p for p in pts if p[1] < target and (not kept or p[0] > kept[-1][0])]
    last, first = (kept[-1] if kept else None), (lost[0] if lost else None)
    cross = None
    if last and first:
        (r1, y1, _), (r2, y2, _) = last, first
        cross = math.exp(math.log(r1) + (target - y1) / (y2 - y1)
                         * (math.log(r2) - math.log(r1)))
    return {"scheme": scheme, "target": target, "last_kept": last, "first_lost": first,
            "crossing": cross}


def answers(rows: list[dict], keep: float = KEEP) -> list[str]:
    """The study's three questions answered from its table rows, one sentence each (the
    paper's answers on MNIST in brackets): the ratio at which a student keeps `keep` of the
    teacher's IS (83% at 1,669:1), whether the students beat the same-size GAN trained
    alone at every width (yes), and whether the joint loss is sharper than MSE alone by
    the VoL ratio (yes). Differences are in pooled std (`difference_in_std`)."""
    teacher = rows[0]
    by = {(r["scheme"], r["width"]): r for r in rows[1:]}
    widths = sorted({w for _, w in by}, reverse=True)
    out = []
    parts = []
    for scheme in ("mse", "joint"):
        k = keep_point(rows, scheme, keep)
        if k is None:
            continue
        last, first = k["last_kept"], k["first_lost"]
        pct = lambda p: f"{100 * p[1] / teacher['is_mean']:.0f}%"  # noqa: E731
        if last and first:
            parts.append(f"{scheme} up to {last[0]:,.0f}:1 (d={last[2]}, {pct(last)}), below "
                         f"at {first[0]:,.0f}:1 (d={first[2]}, {pct(first)}); crossing "
                         f"~{k['crossing']:,.0f}:1")
        elif last:
            parts.append(f"{scheme} at every ratio measured, up to {last[0]:,.0f}:1 (d="
                         f"{last[2]}, {pct(last)}): the point lies beyond the study")
        else:
            parts.append(f"{scheme} at no ratio measured: below already at {first[0]:,.0f}:1 "
                         f"(d={first[2]}, {pct(first)})")
    if parts:
        out.append(f"{keep:.0%} of the teacher's IS ({teacher['is_mean']:.2f} -> "
                   f"{keep * teacher['is_mean']:.2f}) kept by " + "; ".join(parts)
                   + " [paper, MNIST: 83% at 1,669:1].")
    for scheme in ("mse", "joint"):
        links = [(w, *difference_in_std(by[("gan", w)]["is_mean"], by[("gan", w)]["is_std"],
                                        by[(scheme, w)]["is_mean"], by[(scheme, w)]["is_std"]))
                 for w in widths if (scheme, w) in by and ("gan", w) in by]
        if not links:
            continue
        held = [w for w, _, _, v in links if v == "holds"]
        each = ", ".join(f"d={w} {z:+.1f}" for w, _, z, _ in links)
        verdict = ("yes, at every width" if len(held) == len(links) else
                   f"at {len(held)} of {len(links)} widths")
        out.append(f"{scheme} students beat the same student trained alone (gan) by IS: "
                   f"{verdict} (in pooled std: {each}) [paper: yes at every size].")
    links = [(w, *difference_in_std(by[("mse", w)]["vol_ratio_mean"],
                                    by[("mse", w)]["vol_ratio_std"],
                                    by[("joint", w)]["vol_ratio_mean"],
                                    by[("joint", w)]["vol_ratio_std"]))
             for w in widths if ("mse", w) in by and ("joint", w) in by]
    if links:
        held = [w for w, _, _, v in links if v == "holds"]
        each = ", ".join(f"d={w} {d:+.3f} ({z:+.1f})" for w, d, z, _ in links)
        out.append(f"joint sharper than mse (VoL ratio higher by >= 1 pooled std): at "
                   f"{len(held)} of {len(links)} widths (joint - mse, in std: {each}) "
                   f"[paper: yes].")
    return out


def figure1(rows: list[dict]) -> bytes:
    """The paper's Fig. 1: IS and FID against the student's parameters (log x), one line
    per scheme with mean +- std over the seeds, the teacher as a horizontal line."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    teacher = rows[0]
    for ax, key, name in ((axes[0], "is", "IS (higher is better)"),
                          (axes[1], "fid", "FID (lower is better)")):
        for scheme in COLOURS:
            pts = sorted((r["params"], r[f"{key}_mean"], r[f"{key}_std"]) for r in rows
                         if r["scheme"] == scheme and math.isfinite(r[f"{key}_mean"]))
            if pts:
                xs, ys, es = zip(*pts)
                es = [e if math.isfinite(e) else 0.0 for e in es]
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, color=COLOURS[scheme],
                            label=scheme)
        if math.isfinite(teacher[f"{key}_mean"]):
            ax.axhline(teacher[f"{key}_mean"], color="black", linestyle="--",
                       label=f"teacher ({teacher['params']:,} params)")
        else:
            ax.text(0.5, 0.5, f"no {key.upper()} measured (--no-fid)", ha="center",
                    transform=ax.transAxes)
        ax.set_xscale("log")
        ax.set_xlabel("student parameters (log)")
        means = [r[f"{key}_mean"] for r in rows if math.isfinite(r[f"{key}_mean"])
                 and r[f"{key}_mean"] > 0]
        if key == "fid" and means and max(means) > 30 * min(means):
            # collapsed tiny students score FID in the hundreds, the teacher near 1: on a
            # linear axis every working student sits on the floor
            ax.set_yscale("log")
            name += ", log"
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_yscale() == "linear":
            ax.ticklabel_format(axis="y", useOffset=False)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle("students by width: IS and FID against size (mean +- std over seeds)")
    return png(fig)


def _first_row(png_path: Path):
    """The first row of an 8-wide sample grid (torchvision's, padding 2) as an array."""
    import numpy as np
    from PIL import Image
    img = np.asarray(Image.open(png_path).convert("RGB"))
    cell = (img.shape[1] - 2) // 8  # image size + padding
    return img[:cell + 2]


def sample_grid(out: Path, jobs: list, width: int) -> bytes:
    """One row per scheme (its first seed's run, the sample grids' z), the teacher on top."""
    plt = pyplot()
    rows = [("teacher", out / "samples_teacher.png")]
    seen = set()
    for j in jobs:
        if j.width == width and j.scheme not in seen:
            seen.add(j.scheme)
            rows.append((f"{j.scheme} d={width}",
                         j.run_dir / f"samples_g{_student(j.scheme)}.png"))
    rows = [(name, p) for name, p in rows if p.is_file()]
    fig, axes = plt.subplots(len(rows), 1, figsize=(6, 0.95 * len(rows) + 0.3),
                             squeeze=False)
    for ax, (name, p) in zip(axes[:, 0], rows):
        ax.imshow(_first_row(p), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    return png(fig)


def write_outputs(out: Path, jobs: list, teacher: dict, config) -> tuple[Any, str]:
    import pandas as pd
    rows = table_rows(jobs, teacher)
    seeds = max((r["seeds"] for r in rows), default=0)
    caption = (f"Students of teacher {teacher['model']} ({teacher['params']:,} parameters) "
               f"on {config.dataset} {config.image_size} px, {config.epochs} epoch(s): best "
               f"IS, FID at that epoch and VoL at that epoch / the teacher's VoL (same "
               f"fixed z), mean +- std over {seeds} seed(s); compression = teacher's "
               f"parameters / student's. Schemes: mse = kd-mse (eq. 3), joint = kd-joint "
               f"(eq. 4), gan = the student trained alone (dcgan-sn).")
    table = pd.DataFrame(rows)
    text = markdown(rows, caption)
    said = answers(rows)
    if said:
        text += "\n\nThe study's questions:\n\n" + "\n".join(f"* {a}" for a in said)
    atomic_write_text(out / TABLE_CSV, table.to_csv(index=False))
    atomic_write_text(out / TABLE_MD, text + "\n")
    atomic_write_bytes(out / "fig1.png", figure1(rows))
    for width in dict.fromkeys(j.width for j in jobs):
        atomic_write_bytes(out / f"samples_w{width}.png", sample_grid(out, jobs, width))
    return table, text

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
from ..method.scoring import mean_std

COLOURS = {"mse": "#1f77b4", "joint": "#d62728", "gan": "#2ca02c"}


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
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
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
    atomic_write_text(out / TABLE_CSV, table.to_csv(index=False))
    atomic_write_text(out / TABLE_MD, text + "\n")
    atomic_write_bytes(out / "fig1.png", figure1(rows))
    for width in dict.fromkeys(j.width for j in jobs):
        atomic_write_bytes(out / f"samples_w{width}.png", sample_grid(out, jobs, width))
    return table, text

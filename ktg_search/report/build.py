"""`build_report`: reads the run, runs the sections, writes their text and pictures into a
folder built beside the output and swaps it in whole (`ktg report`, commands/report.py)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from ..errors import KtgError
from .baselines import read_baselines
from .context import Options
from .figures import plt
from .render import render_html, render_markdown
from .run import RunView, open_run
from .sections import SECTION_KEYS, build_parts

REPORT_DIR = "report"


def build_report(run: str | Path, out: str | Path | None = None, top: int = 10,
                 reeval_top: int = 3, reeval_samples: int = 10_000, reeval: bool = True,
                 device: str = "auto", progress: bool = True, strict: bool = False,
                 only: list[str] | None = None, allow_external_storage: bool = False,
                 baselines: str | Path | None = None) -> Path:
    """Write `report.html`, `report.md` and the pictures to `out` (default RUN/report).

    `only` limits the report to some parts (keys of `SECTIONS`); `strict` re-raises a
    part's unexpected error instead of writing a note; `baselines` is a `ktg compare`
    output folder to set the best searched graphs against (sections_baselines.py).
    KtgError for a directory that is not a run, a baselines folder that is not a
    compare folder, or a bad setting. Returns the folder."""
    bad = [k for k in (only or []) if k not in SECTION_KEYS]
    if bad:
        raise KtgError(f"unknown report part {bad[0]!r}; valid: {', '.join(SECTION_KEYS)}")
    for name, v, lo in (("top", top, 1), ("reeval_top", reeval_top, 1),
                        ("reeval_samples", reeval_samples, 10)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise KtgError(f"The value of `{name}` is {v!r}, but must be an integer "
                           f">= {lo}")
    view = open_run(run)
    if baselines is not None:
        read_baselines(baselines)  # a wrong folder is the reader's error, said before work
    from ..files.outputs import building_folder, mark_report, report_folder, swap_in
    default = out is None
    out = report_folder(view.path / REPORT_DIR if default else out, view.path, default)
    tmp = building_folder(out)
    try:
        opts = Options(top=top, reeval_top=reeval_top, reeval_samples=reeval_samples,
                       reeval=reeval, device=device, progress=progress, strict=strict,
                       allow_external_storage=allow_external_storage,
                       baselines=None if baselines is None else str(baselines))
        plt()
        import matplotlib
        # no "+1" offset on axes: an IS of 1.0004 reads as 1.0004
        with matplotlib.rc_context({"axes.formatter.useoffset": False}):
            parts = build_parts(view, opts, only)
        for p in parts:
            for name, data in p.files.items():
                if (tmp / name).exists():  # two parts must never claim one picture
                    raise RuntimeError(f"report file {name!r} written by two parts")
                (tmp / name).write_bytes(data)
        title, intro = _intro(view)
        (tmp / "report.md").write_text(render_markdown(title, intro, parts))
        (tmp / "report.html").write_text(render_html(title, intro, parts))
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
    planned = c.num_trials
    size = view.info.get("space_size")
    lines = [
        f"Run `{view.path}`, created {view.info.get('created', '?')}; report written "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}.",
        f"Search: data set `{c.train.dataset}` at {c.train.image_size} px, k = "
        f"{c.space.k} generators, gates {', '.join(c.space.gates)}, "
        f"transfer {', '.join(c.space.transfer)}, {planned} trials planned, "
        f"max {c.train.epochs} epochs, ASHA grace {c.grace_period} / "
        f"reduction {c.reduction_factor}"
        + (f"; space size {size:,} graphs, {c.space.trainable_size():,} of them "
           f"trainable." if isinstance(size, int) else "."),
        f"Trials in the results table: {len(df)} of {planned} ({status}).",
    ]
    if counts.get("untrainable"):
        lines.append(f"Untrainable graphs sampled (recorded with 0 epochs, not trained; "
                     f"docs/untrainable.md): {counts['untrainable']}.")
    if len(df) < planned:
        lines.append("The search is still running or was interrupted: this report shows "
                     "the trials finished so far.")
    return title, lines

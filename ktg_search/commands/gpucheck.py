"""`ktg gpu-check`: check a GPU machine end to end, figures to one JSON file
(studies/gpucheck.py; `make gpu-check` runs the same)."""
from __future__ import annotations

from pathlib import Path

from ..errors import KtgError


def add_parser(sub) -> None:
    sp = sub.add_parser("gpu-check", help="check a GPU machine end to end (JSON of figures)")
    sp.add_argument("-o", "--out", default="gpu-check.json", help="the JSON file to write")
    sp.add_argument("--quick", action="store_true", help="small sizes (a few minutes on CPU)")
    sp.add_argument("--budget", type=float, default=470.0,
                    help="seconds for all stages together (default 470)")
    sp.add_argument("--stages", default=None,
                    help="comma-separated subset of env,gpu_tests,loss_match,bench,search")
    sp.set_defaults(func=run)


def run(args) -> int:
    from ..studies.gpucheck import STAGES, run_gpu_check
    stages = tuple(s for s in (args.stages or ",".join(STAGES)).split(",") if s)
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise KtgError(f"unknown stage {bad[0]!r}; valid: {', '.join(STAGES)}")
    if not 10 <= args.budget <= 3600:
        raise KtgError(f"The value of `--budget` is {args.budget:g}, but must be within "
                       f"10 <= --budget <= 3600 (seconds)")
    res = run_gpu_check(Path(args.out).resolve(), args.quick, args.budget, stages)
    return 0 if res["ok"] else 1

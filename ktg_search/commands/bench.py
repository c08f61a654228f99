"""`ktg bench`: the engine against the literal reference (speed, equal losses)."""
from __future__ import annotations

import json
import sys

from ..errors import KtgError

MAX_BENCH_STEPS = 10_000


def add_parser(sub) -> None:
    sp = sub.add_parser("bench", help="engine speed against the literal reference")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--steps", type=int, default=20)
    sp.set_defaults(func=run)


def run(args) -> int:
    from ..studies.bench import format_bench, run_bench
    if not 1 <= args.steps <= MAX_BENCH_STEPS:
        raise KtgError(f"The value of `--steps` is {args.steps}, but must be an integer with "
                       f"1 <= --steps <= {MAX_BENCH_STEPS}")
    result = run_bench(steps=args.steps, progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result, indent=2) if args.json else format_bench(result))
    return 0

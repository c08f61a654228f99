"""`ktg bench`: the engine against the literal reference (speed, equal losses)."""
from __future__ import annotations

import json
import sys

from ..errors import KtgError
from ..studies.bench_cases import CASES, DEFAULT_CASES

MAX_BENCH_STEPS = 10_000


def add_parser(sub) -> None:
    sp = sub.add_parser("bench", help="engine speed against the literal reference")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--steps", type=int, default=20)
    # one case (and the m = 3 timing on it) costs minutes, the default run half an hour:
    # for a figure of one case, e.g. the cost of several discriminators
    sp.add_argument("--case", action="append", choices=list(CASES), metavar="NAME",
                    help="time only this case (repeatable; default: "
                         + ", ".join(DEFAULT_CASES) + "); valid: " + ", ".join(CASES))
    sp.set_defaults(func=run)


def run(args) -> int:
    from ..studies.bench import format_bench, run_bench
    if not 1 <= args.steps <= MAX_BENCH_STEPS:
        raise KtgError(f"The value of `--steps` is {args.steps}, but must be an integer with "
                       f"1 <= --steps <= {MAX_BENCH_STEPS}")
    result = run_bench(steps=args.steps, cases=args.case,
                       progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result, indent=2) if args.json else format_bench(result))
    return 0

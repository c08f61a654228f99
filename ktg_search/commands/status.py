"""`ktg status RUN`: a running or finished search, from its files."""
from __future__ import annotations


def add_parser(sub) -> None:
    sp = sub.add_parser("status", help="a snapshot of a running or finished search")
    sp.add_argument("run", help="a run directory")
    sp.add_argument("--watch", nargs="?", type=float, const=5.0, metavar="SECONDS",
                    help="refresh every SECONDS (default 5) until the search ends")
    sp.add_argument("--top", type=int, default=5, help="graphs to list (default 5)")
    sp.set_defaults(func=run)


def run(args) -> int:
    from ..search.status import run_status
    return run_status(args.run, watch=args.watch, top=args.top)

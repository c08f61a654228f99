"""`ktg query RUN`: filter and sort a run's results table."""
from __future__ import annotations

from ..errors import KtgError
from .common import add_format_arg, print_frame


def add_parser(sub) -> None:
    sp = sub.add_parser("query", help="filter and sort a run's results table")
    sp.add_argument("run", help="a run directory")
    sp.add_argument("--where", help='a filter over the columns, e.g. "objective > 5 and '
                    "transfer == 'image'\": column names, literals, == != < <= > >=, in "
                    "[...], + - * /, and/or/not, isna(column)")
    sp.add_argument("--sort", default="objective")
    sp.add_argument("--asc", action="store_true", help="ascending (default: descending)")
    sp.add_argument("--top", type=int)
    sp.add_argument("--columns", nargs="+")
    add_format_arg(sp)
    sp.set_defaults(func=run)


def run(args) -> int:
    from ..results.book import load_results
    df = load_results(args.run)
    if args.where is not None:
        from ..results.where import filter_rows
        df = filter_rows(df, args.where)  # our own small language: never Python
    if args.sort:
        if args.sort not in df.columns:
            raise KtgError(f"--sort: unknown column {args.sort!r}; valid: "
                           f"{', '.join(df.columns)}")
        df = df.sort_values(args.sort, ascending=args.asc, na_position="last")
    if args.top is not None:
        if args.top < 1:
            raise KtgError(f"The value of `--top` is {args.top}, but must be an integer >= 1")
        df = df.head(args.top)
    if args.columns:
        cols = [c for part in args.columns for c in part.split(",") if c]
        bad = [c for c in cols if c not in df.columns]
        if bad:
            raise KtgError(f"--columns: unknown column {bad[0]!r}; valid: "
                           f"{', '.join(df.columns)}")
        df = df[cols]
    elif args.format == "table":
        keep = [c for c in df.columns if c not in ("graph", "error") and
                not c.startswith("gate_")]
        df = df[keep]
    print_frame(df, args.format)
    return 0

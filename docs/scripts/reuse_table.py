"""The reuse table (KTG Table 3 at laptop scale) from two `ktg compare` folders.

    PYTHONPATH=. python docs/scripts/reuse_table.py digits=OUT_A digits-m=OUT_B \
        --baselines dcgan-sn,mad-gan-3,through-3 \
        --searched digits-1:digits --searched digits-m-1:digits-m

Each folder holds the same graphs (the baselines and every set's searched graphs) trained
with the same seeds and epochs on its set; the graph names are the compare table's. Prints
the table (best-generator IS mean ± std and rank per set), Spearman's rank correlation of
the two orderings and, per searched graph and set, whether it beats the best baseline by
>= 1 pooled std (ktg_search/studies/reuse.py).
"""
from __future__ import annotations

import argparse
import sys

from ktg_search.errors import KtgError
from ktg_search.studies.reuse import markdown, read_table, reuse_table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs=2, metavar="SET=OUT", help="a data set and its compare folder")
    ap.add_argument("--baselines", required=True, help="comma-separated baseline graph names")
    ap.add_argument("--searched", action="append", default=[], metavar="GRAPH:SET",
                    help="a searched graph and the data set it was searched on (repeatable)")
    args = ap.parse_args(argv)
    try:
        tables = {}
        for item in args.sets:
            name, sep, out = item.partition("=")
            if not sep or not name or not out:
                raise KtgError(f"{item!r} is not SET=OUT (e.g. digits=runs/reuse/digits)")
            tables[name] = read_table(out)
        origins = {}
        for item in args.searched:
            graph, sep, origin = item.rpartition(":")
            if not sep or not graph:
                raise KtgError(f"--searched {item!r} is not GRAPH:SET")
            origins[graph] = origin
        result = reuse_table(tables, origins, [b for b in args.baselines.split(",") if b])
    except KtgError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`ktg report RUN`: the ranked graph report (HTML + Markdown) of a search
(report/build.py)."""
from __future__ import annotations


def add_parser(sub) -> None:
    from ..report import SECTION_KEYS
    sp = sub.add_parser("report", help="write a ranked graph report (HTML + Markdown) for "
                                       "a run")
    sp.add_argument("run", help="a run directory (what `ktg search` prints as 'run dir')")
    sp.add_argument("-o", "--out", metavar="PATH",
                    help="output folder (default: RUN/report). It is replaced whole, so it "
                         "must be new, empty, or a report folder ktg wrote (marker file "
                         ".ktg-report); never the current directory, the run, or a link")
    sp.add_argument("--top", type=int, default=10, help="graphs in the ranked table and "
                    "pictures (default 10)")
    sp.add_argument("--reeval-top", type=int, default=3, help="top graphs to re-evaluate "
                    "(default 3)")
    sp.add_argument("--reeval-samples", type=int, default=10_000,
                    help="samples per generator in the re-evaluation (default 10000)")
    sp.add_argument("--no-reeval", action="store_true", help="skip the re-evaluation "
                    "(stored results are still shown)")
    sp.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (for the "
                    "re-evaluation and the samples)")
    sp.add_argument("--allow-external-storage", action="store_true",
                    help="open the Optuna study even when run.json places it outside the "
                         "run directory (your own cluster's PostgreSQL)")
    sp.add_argument("--baselines", metavar="DIR",
                    help="a `ktg compare` output folder: adds a section setting the best "
                         "searched graphs against its table (mean +- std over seeds), "
                         "with the training settings that differ")
    sp.add_argument("--only", nargs="+", metavar="PART", choices=SECTION_KEYS,
                    help="build only these parts: " + ", ".join(SECTION_KEYS))
    sp.set_defaults(func=run)


def run(args) -> int:
    from ..report import build_report
    out = build_report(args.run, out=args.out, top=args.top, reeval_top=args.reeval_top,
                       reeval_samples=args.reeval_samples, reeval=not args.no_reeval,
                       device=args.device, only=args.only,
                       allow_external_storage=args.allow_external_storage,
                       baselines=args.baselines)
    print(f"wrote {out / 'report.html'} and {out / 'report.md'}")
    return 0

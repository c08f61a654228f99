"""`ktg compress --teacher T.pt --widths 16,8,4,2`: the KD paper's compression study,
students of several widths under MSE, the joint loss and as a GAN alone (compress.py)."""
from __future__ import annotations

from .common import add_parallel_args, add_training_args, recipe_config


def add_parser(sub) -> None:
    from ..files.outputs import add_out_args
    sp = sub.add_parser(
        "compress", help="the KD paper's study: students of several widths, three schemes",
        description="Train, for every student width d and seed, the student dcgan-w<d> "
                    "(a) under pixel MSE to the teacher only (kd-mse), (b) under the joint "
                    "loss (kd-joint) and (c) as a plain GAN with no teacher (dcgan-sn); "
                    "write OUT/table.md and OUT/table.csv (parameters, compression ratio, "
                    "IS, FID, VoL ratio to the teacher, mean +- std over the seeds), "
                    "OUT/fig1.png (IS and FID against parameters) and OUT/samples_w<d>.png. "
                    "Rerunning the same command with the same -o resumes: only the runs "
                    "not finished are trained.")
    sp.add_argument("--teacher", required=True, metavar="PATH",
                    help="teacher checkpoint written by `ktg pretrain` (its model is node "
                         "0's)")
    sp.add_argument("--widths", default="16,8,4,2", metavar="D,D,...",
                    help="student base widths d, comma-separated, each one of the dcgan-w<d> "
                         "models (default 16,8,4,2)")
    sp.add_argument("--schemes", default="mse,joint,gan", metavar="S,S,...",
                    help="which of mse, joint, gan (default all three)")
    add_training_args(sp, preset=True)
    sp.add_argument("--seeds", type=int, default=3, help="seeds per student (default 3)")
    sp.add_argument("--seed0", type=int, default=0, help="first seed (default 0)")
    add_out_args(sp, "output folder (default ktg_runs/compress); an earlier compress "
                     "output of the same settings is resumed", default="ktg_runs/compress")
    add_parallel_args(sp)
    sp.add_argument("--verbose", action="store_true",
                    help="a line per finished run (its best IS and time) under the status "
                         "line")
    sp.set_defaults(func=run)


def run(args) -> int:
    from ..studies.compress import compress, parse_schemes, parse_widths
    widths, schemes = parse_widths(args.widths), parse_schemes(args.schemes)
    cfg = recipe_config(args, args.seed0)
    result = compress(args.teacher, cfg, args.out, widths, seeds=args.seeds,
                      seed0=args.seed0, schemes=schemes, use_ray=not args.no_ray,
                      address=args.address, gpus_per_run=args.gpus_per_run,
                      force=args.force, verbose=args.verbose)
    print(result["markdown"])
    out = result["out"]
    resumed = f", {result['resumed']} resumed from earlier" if result["resumed"] else ""
    print(f"files: {out}/table.md, {out}/table.csv, {out}/fig1.png, {out}/samples_w<d>.png, "
          f"per run: {out}/<scheme>-w<d>/seed<N>/; {result['trained']} run(s) trained"
          f"{resumed}; {result['wall_s']:.0f} s in all")
    return 0

"""`ktg pretrain --model M`: a teacher generator for the distillation graphs."""
from __future__ import annotations

from .common import add_training_args, recipe_config


def add_parser(sub) -> None:
    from .. import registry
    from ..files.outputs import add_out_args
    from ..method.scoring import EPOCH_RULES
    sp = sub.add_parser(
        "pretrain", help="train one generator as a distillation teacher",
        description="Train a single generator with its own spectral-norm discriminator and "
                    "write it as a checkpoint that a graph node names as `pretrained` (or "
                    "that `ktg compare --teacher` passes to kd-mse / kd-joint).")
    sp.add_argument("--model", required=True, choices=registry.GENERATORS.names(),
                    help="generator model key")
    add_training_args(sp, preset=True)
    add_out_args(sp, "checkpoint file to write", required=True)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--keep", choices=EPOCH_RULES, default="best",
                    help="export the weights of the best-IS epoch (default) or the last")
    sp.set_defaults(func=run)


def run(args) -> int:
    from ..results.runs import pretrain
    # the same precedence as `ktg train`: flags > --preset > the training defaults, so a
    # teacher and its students (`ktg compress --preset`) can share one recipe by name
    cfg = recipe_config(args, args.seed)
    info = pretrain(args.model, cfg, args.out, keep=args.keep, force=args.force)
    which = (f"best epoch {info['best_epoch']}, IS {info['best_is']:.3f}" if args.keep ==
             "best" else f"last epoch {info['epochs']}, IS {info['last_is']:.3f}")
    print(f"wrote {info['output']}: {args.model} after {info['epochs']} epoch(s) on "
          f"{cfg.dataset} ({which}); use it with `ktg compare kd-mse --teacher "
          f"{info['output']} --dataset {cfg.dataset} --image-size {cfg.image_size}`")
    return 0

"""What the commands share: output formats, the training flags, progress bars."""
from __future__ import annotations

import argparse
import sys

from ..errors import KtgError

FORMATS = ("table", "json", "csv")
MAX_SEEDS = 1000


def add_format_arg(sp: argparse.ArgumentParser) -> None:
    """`--format {table,json,csv}` (optuna/cli.py's convention)."""
    sp.add_argument("--format", choices=FORMATS, default="table")


def print_frame(df, fmt: str) -> None:
    """A DataFrame as an aligned table, JSON records or CSV (optuna/cli.py's --format)."""
    if fmt == "json":
        print(df.to_json(orient="records", indent=2))
    elif fmt == "csv":
        print(df.to_csv(index=False), end="")
    else:
        import pandas as pd
        with pd.option_context("display.max_rows", None, "display.max_columns", None,
                               "display.width", 200, "display.max_colwidth", 60):
            print(df.to_string(index=False) if not df.empty else "(no rows)")


def epoch_bar(total: int, desc: str):
    """A progress bar over training epochs, on stderr."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr, leave=True,
                dynamic_ncols=True)


def check_seeds(seeds: int) -> None:
    if not 1 <= seeds <= MAX_SEEDS:
        raise KtgError(f"The value of `--seeds` is {seeds}, but must be an integer "
                       f"with 1 <= --seeds <= {MAX_SEEDS}")


def check_dataset(name: str) -> None:
    from .. import registry  # noqa: F401  (the data set loaders registered)
    from ..data import check_dataset_name
    check_dataset_name(name)


def add_training_args(sp: argparse.ArgumentParser) -> None:
    """The flags of one training run (`ktg train`, `compare`, `pretrain`)."""
    from .. import registry as reg
    from ..training import D_LOSS_WEIGHTINGS
    sp.add_argument("--dataset", default="digits",
                    help="one of " + ", ".join(n + (":PATH" if n == "folder" else "")
                                               for n in reg.DATASETS.names()))
    sp.add_argument("--epochs", type=int, default=10)
    sp.add_argument("--image-size", type=int, choices=(16, 32, 64), default=16)
    sp.add_argument("--batch-size", type=int, default=64)
    sp.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (G and D)")
    sp.add_argument("--betas", type=float, nargs=2, default=(0.5, 0.999),
                    metavar=("B1", "B2"), help="Adam betas (default 0.5 0.999, the "
                    "paper's; 0 0.9 learns faster at digits scale, see README)")
    sp.add_argument("--d-width", type=int, default=64, help="discriminator base width")
    sp.add_argument("--d-loss-weighting", choices=D_LOSS_WEIGHTINGS, default="uniform",
                    help="eq. 1 over a D step: uniform (every sample alike) or paper_steps "
                    "(real half of the loss, as Sec. 3.3.1's steps repeated k times)")
    sp.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    sp.add_argument("--amp", choices=("off", "bf16"), default="off")
    sp.add_argument("--eval-samples", type=int, default=1000)
    sp.add_argument("--extractor", choices=reg.EXTRACTORS.names() or None,
                    default="classifier")
    sp.add_argument("--inception-weights", help="torch-fidelity Inception weights file")
    sp.add_argument("--no-fid", action="store_true", help="skip FID")
    sp.add_argument("--data-root", help="where torchvision data sets live")


def train_config(args, epochs: int, seed: int):
    """The TrainConfig the training flags describe."""
    from ..training import TrainConfig
    return TrainConfig(dataset=args.dataset, image_size=args.image_size,
                       batch_size=args.batch_size, epochs=epochs, seed=seed,
                       lr_g=args.lr, lr_d=args.lr, beta1=args.betas[0], beta2=args.betas[1],
                       d_width=args.d_width, d_loss_weighting=args.d_loss_weighting,
                       device=args.device, eval_samples=args.eval_samples,
                       extractor=args.extractor, fid=not args.no_fid,
                       inception_weights=args.inception_weights, data_root=args.data_root,
                       amp=args.amp,
                       max_iters_per_epoch=getattr(args, "max_iters_per_epoch", None))

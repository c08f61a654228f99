"""Which classes each generator of a trained graph draws, read by the IS classifier.

For each `ktg train` / `ktg compare` checkpoint (OUT/seedN/checkpoint.pt, the last
epoch's weights; the EMA copies, as evaluation reads them): per generator, how many of
the 10 classes take at least 5% of its 1,000 images by the classifier's argmax, and the
largest class share; then the same for the even mixture of the generators. A
generator's own IS is capped by the classes it draws, so generators that split the
classes between them score low one by one and high together; generators that each draw
every class score alike one by one and together. docs/table1.md uses it to say which of
the two a D with one fake class gives on digits.

    PYTHONPATH=. python docs/scripts/class_share.py runs/x/seed0/checkpoint.pt [...]
"""
from __future__ import annotations

import argparse
import sys

import torch

from ktg_search.data.metrics import to_uint8
from ktg_search.method.evaluation import data_and_evaluator
from ktg_search.method.training import Trainer


def class_shares(path: str, n: int = 1000, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(per learning generator, the share of its n images in each class; the mixture's
    shares) for the checkpoint at `path`."""
    t = Trainer.restore(path)
    _, ev = data_and_evaluator(t.config)
    shares, counts = [], []
    for node in t.learning:
        x = t.sample(node, n, seed=seed)
        logits = ev.extractor.features(to_uint8(x.cpu()))["logits"]
        c = torch.bincount(logits.argmax(1), minlength=logits.shape[1]).float()
        counts.append(c)
        shares.append(c / c.sum())
    mix = torch.stack(counts).sum(0)
    return shares, mix / mix.sum()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--n", type=int, default=1000, help="images per generator")
    ap.add_argument("--min-share", type=float, default=0.05,
                    help="a class counts as drawn from this share of the images on")
    args = ap.parse_args(argv)
    for path in args.checkpoints:
        shares, mix = class_shares(path, args.n)
        parts = [f"G{i}" for i in range(len(shares))] + ["mixture"]
        print(path)
        for name, s in zip(parts, shares + [mix]):
            drawn = int((s >= args.min_share).sum())
            print(f"  {name:8s} classes drawn {drawn:2d}  largest share {s.max():.2f}  "
                  + " ".join(f"{v:.2f}" for v in s.tolist()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

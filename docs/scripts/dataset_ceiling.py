"""The ceiling of a data set's IS: its classifier's held-out accuracy and the IS and FID of
its own real images, the figures docs/digits-m.md (and docs/recipe.md's "real digits
score 7.9") quote.

    PYTHONPATH=. python docs/scripts/dataset_ceiling.py DATASET SIZE [--samples 5000]

Trains (once, then cached under $KTG_CACHE) the `classifier` extractor of the data set at
that size, then scores `--samples` real images drawn without replacement with the seeded
generator (FID of real images against all of them: ~0 up to sampling noise).
"""
from __future__ import annotations

import argparse
import sys

import torch

from ktg_search.data.loading import load_dataset
from ktg_search.data.metrics import Evaluator


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("size", type=int)
    ap.add_argument("--samples", type=int, default=5000)
    args = ap.parse_args(argv)
    data = load_dataset(args.dataset, args.size)
    ev = Evaluator(data, extractor="classifier", num_samples=args.samples, fid=True)
    n = min(args.samples, len(data))
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:n]
    real = data.to_float(idx)
    m = ev.score(real)
    print(f"| data set | size | images | classifier held-out accuracy | IS of {n} real "
          f"images | FID of them |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.dataset} | {args.size} px | {len(data):,} | "
          f"{ev.classifier_accuracy:.3f} | {m['is']:.2f} +- {m['is_std']:.2f} | "
          f"{m['fid']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

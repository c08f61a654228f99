"""What a trained shared discriminator says about real and generated images.

For each `ktg train` checkpoint (OUT/seedN/checkpoint.pt, a graph with one D): D's mean
softmax over its k+1 classes (G_0 .. G_{k-1}, real) on real images and on each
generator's images (the raw generators D was trained against, not the EMA copies), and
how often its argmax names the right class. A D that names each generator right but
gives real images the real class no more often than fakes has stopped judging realness:
the generators' loss (eq. 2, the real class) then tells them nothing about the data.
That is what docs/digits-m.md found for k = 2 graphs on digits-m.

    PYTHONPATH=. python docs/scripts/d_probe.py runs/x/seed0/checkpoint.pt [...] [--n 512]
"""
from __future__ import annotations

import argparse
import sys

import torch

from ktg_search.method.evaluation import data_and_evaluator
from ktg_search.method.losses import fake_class
from ktg_search.method.training import Trainer


def probe(path: str, n: int = 512, seed: int = 0) -> list[tuple[str, list[float], float]]:
    """(part, mean softmax over the k+1 classes, share whose argmax is the class D was
    trained to give the part) for the real images and each generator's."""
    t = Trainer.restore(path)
    if t.multi is not None:
        raise SystemExit(f"{path}: a graph with {t.graph.m} discriminators; this probe "
                         f"reads a single shared D")
    data, _ = data_and_evaluator(t.config)
    k = t.graph.k
    real = next(iter(data.batches(n, torch.Generator().manual_seed(seed))))
    z = torch.randn(k, n, t.config.nz, generator=torch.Generator().manual_seed(seed))
    out = []
    with torch.no_grad():
        t.D.eval()
        for i, (name, x) in enumerate([("real", real.float())] +
                                      [(f"G{j}", t.generators[j](z[j])[0]) for j in range(k)]):
            p = torch.softmax(t.D(x.to(t.device)).float(), 1)
            # the class D was trained to give them (d_classes fake: class 0 for all)
            right = k if i == 0 else fake_class(i - 1, t.config.d_classes)
            out.append((name, p.mean(0).tolist(), (p.argmax(1) == right).float().mean().item()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--n", type=int, default=512, help="images per part")
    args = ap.parse_args(argv)
    for path in args.checkpoints:
        rows = probe(path, args.n)
        k = len(rows) - 1
        print(f"{path}\n  part   " + "  ".join(f"p({c})" for c in
                                              [f"G{j}" for j in range(k)] + ["real"]) +
              "  argmax right")
        for name, mean, right in rows:
            print(f"  {name:5s}  " + "  ".join(f"{v:5.3f}" for v in mean) + f"  {right:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

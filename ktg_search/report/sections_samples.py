"""Sections: what the best graph's images look like. A sample grid with one z for every
generator (the paper's Fig. 5) and a t-SNE of samples and real images (Fig. 6).

Both show the same weights: `run.best_trainer(opts.top)`, restored once per report."""
from __future__ import annotations

from .context import Options, need_trials, section, top_digits
from .figures import plt, png, to_grid
from .render import Part
from .run import RunView
from .tables import as_float

SAMPLE_SEED = 4242        # the z of the sample grid and the t-SNE (one z for every G)
TSNE_PER_SOURCE = 150     # points per generator (and of real images) in the t-SNE


@section('samples', 'Samples of the best graph (same z)')
def samples(run: RunView, opts: Options, p: Part) -> None:
    """64 samples of every generator of the best graph, all from the same z."""
    import torch
    p.text("Samples from every generator of the best graph (its best epoch's weights), "
           "all fed the same z: the same cell in every panel is the same latent point "
           "(the paper's Fig. 5).")
    need_trials(run)
    rank, r, trainer = run.best_trainer(opts.top)
    if rank != 1:
        p.note(f"rank 1 has no checkpoint; showing rank {rank} (trial {r.trial_id})")
    k, nz = trainer.graph.k, trainer.config.nz
    n, nrow = 64, 8
    z = torch.randn(n, nz, generator=torch.Generator().manual_seed(SAMPLE_SEED))
    digits = top_digits(run, opts)
    fig, axes = plt().subplots(1, k, figsize=(3.3 * k, 3.7), squeeze=False)
    for i in range(k):
        grid = to_grid(trainer.sample(i, n, z=z), nrow)
        cmap = "gray" if grid.ndim == 2 else None
        ax = axes[0][i]
        ax.imshow(grid, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"G{i} ({trainer.graph.nodes[i].model})\nbest IS "
                     f"{as_float(r.get(f'is_best_g{i}')):.{digits}f}", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"trial {r.trial_id} (rank {rank}), best epoch {trainer.best_epoch}: "
                 f"same z for every generator", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    p.basis(f"{n} samples per generator, trial {r.trial_id}.")
    p.image(p.file("samples.png", png(fig)), "sample grid, same z")


@section('tsne', "t-SNE of the best graph's samples")
def tsne(run: RunView, opts: Options, p: Part) -> None:
    """A t-SNE of every generator's samples (same z) and of real images."""
    import numpy as np
    import torch
    from sklearn.manifold import TSNE
    p.text("t-SNE of samples from every generator of the best graph (same z for every "
           "generator) with real images for reference, on flattened pixels (the "
           "paper's Fig. 6). Overlapping clouds: the generators make similar images; "
           "a wider cloud: more variety.")
    need_trials(run)
    rank, r, trainer = run.best_trainer(opts.top)
    k, nz, m = trainer.graph.k, trainer.config.nz, TSNE_PER_SOURCE
    z = torch.randn(m, nz, generator=torch.Generator().manual_seed(SAMPLE_SEED + 1))
    feats, who = [], []
    for i in range(k):
        feats.append(trainer.sample(i, m, z=z).flatten(1).numpy())
        who += [f"G{i}"] * m
    real = _real_images(run.data(), m)
    feats.append(real.flatten(1).numpy())
    who += ["real"] * len(real)
    x = np.concatenate(feats).astype(np.float32)
    perplexity = min(30.0, (len(x) - 1) / 3)
    # one OpenMP thread: on a busy shared machine its spinning threads made a
    # 2-second t-SNE take 20 s and more
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1):
        emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0,
                   max_iter=500).fit_transform(x)
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(6, 5.2))
    who = np.array(who)
    colours = pyplot.get_cmap("tab10")
    sel = who == "real"
    ax.scatter(emb[sel, 0], emb[sel, 1], s=12, c="#bbbbbb", marker="x",
               label="real images", alpha=0.8)
    for i in range(k):
        sel = who == f"G{i}"
        ax.scatter(emb[sel, 0], emb[sel, 1], s=14, color=colours(i), alpha=0.75,
                   label=f"G{i} ({trainer.graph.nodes[i].model})", edgecolors="none")
    ax.legend(fontsize=8, markerscale=1.5, loc="best", framealpha=0.85)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE, trial {r.trial_id} (rank {rank}): {m} samples per generator",
                 fontsize=10)
    p.basis(f"{m} samples per generator and {len(real)} real images.")
    p.image(p.file("tsne.png", png(fig)), "t-SNE of samples by generator")


def _real_images(data, n: int):
    """Up to n real images in [-1, 1], a fixed random subset of the data set."""
    import torch
    total = len(data)
    idx = torch.randperm(total, generator=torch.Generator().manual_seed(SAMPLE_SEED))[:n]
    return data.to_float(idx)

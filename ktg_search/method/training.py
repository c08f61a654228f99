"""The trainer: k generators, one (k+1)-way discriminator, a knowledge-transfer graph.
Several discriminators (`discriminators` >= 2, MGGAN's regrouping): multid.py states the
rule (D_j trains on real + the generators it faces; L_t sums Gate_{D_j,t}(L_{D_j,t})).

Reads top to bottom like the paper's algorithm (Sec. 3.3). No Ray in here: the Ray Tune
trainable, `ktg train`, `ktg compare` and the benchmark all drive this class. What it is
configured with is `TrainConfig` (trainconfig.py); its checkpoint (state, files, teacher
export) is `TrainerCheckpoints` (checkpoints.py), mixed in.

One iteration:
  1. D step: real images labelled k, G_i(z_i) labelled i (each generator its own z), one
     cross-entropy over the concatenated batch (eq. 1), one backward, one Adam step. D
     sees the parts in one call or one call per part (`discriminate`): the same loss
     for the SN discriminator; the per-part calls are the paper's separate passes.
  2. G step: one z shared by all generators. For each learning generator t,
     L_t = Gate_{D,t}(L_{D,t}) + sum_{s != t} Gate_{s,t}(L_{s,t}), the source side detached
     so that an edge's gradient reaches t only (each generator's normalized image or
     attention maps are computed once and shared by its edges). Edges whose gate weight
     is zero right now (cutoff always; linear_up at p = 0; linear_down at p = 1) are not
     computed. The sum of the L_t goes through one backward: each L_t only reaches G_t's
     parameters, so this is the same as k separate backwards.
The G step's second half (the gated losses, one backward, the EMA) is `GeneratorStep`
in steps.py, shared with the several-discriminator step (multid.py).
A step reads no value back from the device (steps.py): z is drawn where training runs,
the losses stay device tensors, summed over the epoch and read back once at its end,
where a non-finite one marks the run diverged.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoints import TrainerCheckpoints
from .ema import GeneratorEMA
from ..data.sharpness import VOL_IMAGES, mean_vol
from ..errors import KtgError
from .graph import Graph
from .losses import discriminator_loss, fake_class, generator_adversarial_loss
from .models import count_parameters, same_sigma
from .multid import MultiD
from .steps import GeneratorStep, LossSums, Noise, to_device
from ..registry import DISCRIMINATORS, GATES, GENERATORS, OBJECTIVES, TRANSFERS
from .teachers import load_pretrained
from .trainconfig import TrainConfig, effective_discriminator, resolve_device

EVAL_SEED = 20241


class Trainer(TrainerCheckpoints, GeneratorStep):
    """Trains the generators and the discriminator of one knowledge-transfer graph.

    `data` is an `ImageData` (see data.py) and `evaluator` an `Evaluator` (metrics.py);
    both are built from the config when not given, so a caller that trains many graphs on
    one data set (a Ray actor that is reused) can share them.
    """

    def __init__(self, graph: Graph, config: TrainConfig, data=None, evaluator=None) -> None:
        config.validate()
        self.graph, self.config = graph, config
        self.device = resolve_device(config.device)
        if data is None:
            from ..data.loading import load_dataset
            data = load_dataset(config.dataset, config.image_size, root=config.data_root)
        self.data = data
        self._evaluator = evaluator
        k, c = graph.k, data.channels
        torch.manual_seed(config.seed)  # model initialisation
        # z and the data order come from our own generator, so that they do not depend on
        # whatever else in the process (a reused Ray actor) touched the global RNG
        self.rng = torch.Generator().manual_seed(config.seed)
        self.noise = Noise(self.rng, self.device, config.seed)  # on a GPU: drawn there
        self.frozen = set(graph.frozen_nodes())
        self._frozen_scores: dict[tuple[int, int], tuple[dict, float]] = {}  # evaluate()
        self.learning = graph.learning_nodes()
        self.generators = nn.ModuleList()
        for i, node in enumerate(graph.nodes):
            if i in self.frozen:
                model, g = load_pretrained(node.pretrained, config.image_size, c, config.nz)
                if model != node.model:
                    raise KtgError(f"node {i} says model {node.model!r} but its checkpoint "
                                   f"{node.pretrained!r} holds a {model!r}")
                g.requires_grad_(False)
            else:
                g = GENERATORS.get(node.model)(config.image_size, c, config.nz)
            self.generators.append(g)
        self.d_kind = effective_discriminator(graph.discriminator, config.discriminator)
        self.D = DISCRIMINATORS.get(self.d_kind)(config.image_size, c, k + 1, config.d_width)
        self.generators.to(self.device)
        self.D.to(self.device)
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.D.modules())
        self.d_per_part = config.d_passes == "per_part" or (config.d_passes == "auto"
                                                             and has_bn)
        if self.device.type == "cpu":
            # oneDNN's convolutions are faster on NHWC: a whole step -8% (16 px) to -17%
            # (64 px) with D channels-last; the generators gain nothing, so they stay NCHW
            self.D.to(memory_format=torch.channels_last)
        betas = (config.beta1, config.beta2)
        # Adam is per parameter, so one optimizer over every learning generator is the same
        # as one per generator; parameters whose grad is None (no active edge) are skipped.
        g_params = [p for i in self.learning for p in self.generators[i].parameters()]
        self.opt_g = g_params and torch.optim.Adam(g_params, lr=config.lr_g, betas=betas) or None
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.lr_d, betas=betas)
        self.transfer = TRANSFERS.get(graph.transfer)
        # eq. 3-5's divisor per compared vector: its own N ("plain"), or N at 64 px
        self.transfer_positions = (self.transfer.reference_positions(c) if
                                   config.transfer_scale == "resolution" else None)
        self.ema = (GeneratorEMA(self.generators, self.learning, config.ema_decay,
                                 config.ema_start).to(self.device)
                    if config.ema_decay > 0 else None)
        self.iters_per_epoch = len(data) // config.batch_size
        if config.max_iters_per_epoch:
            self.iters_per_epoch = min(self.iters_per_epoch, config.max_iters_per_epoch)
        if self.iters_per_epoch < 1:
            raise KtgError(f"batch_size {config.batch_size} is larger than the data set "
                           f"{data.name!r} ({len(data)} images)")
        self.total_iters = self.iters_per_epoch * config.epochs
        self.iteration, self.epoch, self.status = 0, 0, "running"
        self.history: list[dict] = []
        self.best_is, self.best_epoch, self.best_objective = [float("-inf")] * k, 0, \
            float("-inf")
        # generator weights at the best epoch: a search keeps only its newest checkpoints,
        # and the report re-scores the best epoch, not the last
        self.best_generators: list[dict] | None = None
        self.multi = MultiD(self) if graph.m > 1 else None

    # ---- the algorithm -----------------------------------------------------------------
    def discriminate(self, parts: list[Tensor]) -> Tensor:
        """D's logits for a list of batches, concatenated in the same order.

        One call over the concatenation, or (`d_per_part`) one call per part: the paper's
        separate passes, which a batch-norm D needs (each pass its own batch statistics,
        as the reference and DCGAN do). Either way spectral norm's power iteration runs
        once, on the first call, so every part sees the same W / sigma as in one call.
        """
        if not self.d_per_part or len(parts) == 1:
            return self.D(torch.cat(parts))
        out = [self.D(parts[0])]
        with same_sigma(self.D):
            out += [self.D(x) for x in parts[1:]]
        return torch.cat(out)

    def progress(self) -> float:
        return min(1.0, self.iteration / max(1, self.total_iters))

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.config.amp == "bf16")

    def train_step(self, real: Tensor) -> dict[str, Tensor]:
        """One D step and one G step on a batch of real images; returns the losses as
        detached 0-d tensors on the device (steps.read_losses: as floats)."""
        if self.multi is not None:
            return self.multi.step(real)
        k, nz, dev = self.graph.k, self.config.nz, self.device
        b = real.shape[0]
        real = to_device(real, dev)
        p = self.progress()

        # 1. D step: real -> class k, G_i(z_i) -> class i, every generator its own z
        z_d = self.noise.randn(k, b, nz)
        with torch.no_grad(), self._autocast():
            fakes = [self.generators[i](z_d[i])[0] for i in range(k)]
        labels = torch.cat([torch.full((b,), k, dtype=torch.long, device=dev)] +
                           [torch.full((b,), fake_class(i, self.config.d_classes),
                                       dtype=torch.long, device=dev) for i in range(k)])
        self.D.requires_grad_(True)
        with self._autocast():
            per_sample = discriminator_loss(self.discriminate([real.float()] +
                                                              [f.float() for f in fakes]),
                                            labels)
        if self.config.d_loss_weighting == "paper_steps":
            # real half of the loss, each generator 1/(2k): weights relative to the mean
            # over all (k+1) * b samples
            w_real, w_fake = (k + 1) / 2, (k + 1) / (2 * k)
            per_sample = per_sample * torch.where(labels == k, w_real, w_fake)
        d_loss = per_sample.mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()

        # 2. G step: one z for all generators; D is a fixed critic here
        z = self.noise.randn(b, nz)
        self.D.requires_grad_(False)
        # the edges into learning nodes whose gate weight is not zero now: (src, t) -> gate
        active = {(src, t): g for t in self.learning for src in ["D", *range(k)]
                  if src != t and GATES.get(g := self.graph.gate(src, t)).is_active(p)}
        # D judges G_i(z) only where an active edge reads it: D -> i, or a gate (correct)
        # that asks whether G_i's images pass as real. A frozen teacher, or a node whose
        # D edge is cut, costs no D pass here.
        judged_order = sorted({t if src == "D" else src for (src, t), g in active.items()
                               if src == "D" or GATES.get(g).needs_verdict})
        with self._autocast():
            outs = self.generate(z)
            if judged_order:
                out = self.discriminate([outs[i][0] for i in judged_order]).float()
                logits = dict(zip(judged_order, out.view(len(judged_order), b, k + 1),
                                  strict=True))
            else:
                logits = {}
        # "the source is right on this sample" (gates.py): for s -> t, D calls G_s's image
        # real; for D -> t, D calls G_t's image fake
        said_real = {i: lg.detach().argmax(dim=1) == k for i, lg in logits.items()}

        def adversarial(t: int) -> list[Tensor]:
            if ("D", t) not in active:
                return []
            adv = generator_adversarial_loss(logits[t])
            return [GATES.get(active["D", t])(adv, p, ~said_real[t])]
        return self.generator_update(outs, active, p, adversarial, said_real.get,
                                     {"d_loss": d_loss.detach()})

    def train_epoch(self) -> dict[str, float]:
        """One pass over the real data (or `max_iters_per_epoch` batches): the mean
        losses, read back from the device once. A non-finite loss in any step marks the
        run diverged (every loss NaN); the steps after it in the epoch ran on (nothing
        read the loss to stop them), and what they did is discarded with the run."""
        # nodes that do not learn run in eval mode: a frozen teacher's batch-norm statistics
        # must not drift either, or it would not be bit-identical after training
        for i, g in enumerate(self.generators):
            g.train(i in self.learning)
        self.D.train()
        sums, n = LossSums(), 0
        for real in self.data.batches(self.config.batch_size, self.rng):
            if n >= self.iters_per_epoch:
                break
            sums.add(self.train_step(to_device(real, self.device)))
            n += 1
        self.epoch += 1
        means, finite = sums.read(n)
        if not finite:
            self.status = "diverged"
            return {key: float("nan") for key in means}
        return means

    # ---- evaluation --------------------------------------------------------------------
    @property
    def evaluator(self):
        if self._evaluator is None:  # on the training device (evaluation.py's rule)
            from .evaluation import build_evaluator
            self._evaluator = build_evaluator(self.data, self.config, device=str(self.device))
        return self._evaluator

    def eval_generator(self, node: int) -> nn.Module:
        """What evaluation, samples and best-weights copies read for `node`: its EMA copy
        when the EMA is on and the node learns, else the generator itself."""
        ema = self.ema.module(node) if self.ema is not None else None
        return ema if ema is not None else self.generators[node]

    @torch.no_grad()
    def sample(self, node: int, n: int, z: Tensor | None = None,
               seed: int | None = None) -> Tensor:
        """n images in [-1, 1] from generator `node` (eval mode: BN running statistics;
        the EMA copy when the EMA is on)."""
        g = self.eval_generator(node)
        was_training = g.training
        g.eval()
        if z is None:
            gen = torch.Generator().manual_seed(seed if seed is not None else 12345 + node)
            z = torch.randn(n, self.config.nz, generator=gen)
        out = []
        dev = next(g.parameters()).device  # the module's own: a caller may have moved some
        for chunk in z.split(500):
            out.append(g(chunk.to(dev))[0].float().cpu())
        g.train(was_training)
        return torch.cat(out)

    def evaluate(self, num_samples: int | None = None) -> dict[str, float]:
        """IS (and FID when on) of every generator on `eval_samples` samples, of the
        learning generators' even mixture when two or more (`is_mix`, `fid_mix`); the
        VoL on the first VOL_IMAGES (`vol_g{i}`) and the size (`params_g{i}`). The same
        fixed z for every generator and epoch (each IS/FID batch: the next slice)."""
        n = num_samples or self.config.eval_samples
        z_all = torch.randn(n, self.config.nz, generator=torch.Generator().manual_seed(EVAL_SEED))

        def drawer(i: int) -> Callable[[int], Tensor]:
            cursor = [0]

            def draw(m: int) -> Tensor:
                cursor[0] += m
                return self.sample(i, m, z=z_all[cursor[0] - m:cursor[0]])
            return draw
        # a frozen teacher is scored once: its weights never change and the z is fixed, so
        # every later epoch would score the same images again (in a kd run of a d = 64
        # teacher that was most of the evaluation's time)
        fresh = [i for i in range(self.graph.k) if (i, n) not in self._frozen_scores]
        learners = [i for i in range(self.graph.k) if i not in self.frozen]
        per, mix = self.evaluator.score_generators(
            [drawer(i) for i in fresh], num_samples=n,
            mixture=[fresh.index(i) for i in learners])
        scored, vols = dict(zip(fresh, per)), {}
        for i in range(self.graph.k):  # the KD paper's sharpness, on the same fixed z
            if i in scored:
                vols[i] = mean_vol(self.sample(i, VOL_IMAGES, z=z_all[:VOL_IMAGES]))
                if i in self.frozen:
                    self._frozen_scores[(i, n)] = (scored[i], vols[i])
            else:
                scored[i], vols[i] = self._frozen_scores[(i, n)]
        out: dict[str, float] = {}
        for tag, scores in [*((f"g{i}", scored[i]) for i in range(self.graph.k)),
                            ("mix", mix)]:
            if scores is not None:
                out[f"is_{tag}"] = float(scores["is"])
                if scores.get("fid") is not None:
                    out[f"fid_{tag}"] = float(scores["fid"])
        for i in range(self.graph.k):
            out[f"vol_g{i}"] = vols[i]
            out[f"params_g{i}"] = count_parameters(self.generators[i])
        return out

    def scored_nodes(self) -> list[int]:
        """Nodes the objective looks at: the target, else every node this graph trains."""
        if self.graph.target is not None:
            return [self.graph.target]
        nodes = [i for i in range(self.graph.k) if i not in self.frozen]
        return nodes or list(range(self.graph.k))

    def score(self, metrics: dict[str, float]) -> float:
        """The OBJECTIVES rule over the scored nodes' `is_g{i}` and `is_mix` (the learning
        nodes' mixture = the scored ones when two or more; one is its own); may be NaN."""
        nodes = self.scored_nodes()
        mix = metrics.get("is_mix", math.nan) if len(nodes) > 1 else metrics[f"is_g{nodes[0]}"]
        return OBJECTIVES.get(self.config.objective)([metrics[f"is_g{i}"] for i in nodes], mix)

    def run_epoch(self) -> dict[str, Any]:
        """Train one epoch, evaluate, update the bests; the row the trainable reports."""
        t0 = time.perf_counter()
        losses = self.train_epoch()
        row: dict[str, Any] = {"epoch": self.epoch, "iteration": self.iteration, **losses}
        if self.status == "diverged":
            row.update(status="diverged", objective=self.best_objective_or_nan(),
                       train_s=time.perf_counter() - t0)
            self.history.append(row)
            return row
        t1 = time.perf_counter()
        metrics = self.evaluate()
        row.update(metrics)
        for i in range(self.graph.k):
            v = metrics[f"is_g{i}"]
            if math.isfinite(v):
                self.best_is[i] = max(self.best_is[i], v)
        current = self.score(metrics)
        if current > self.best_objective:
            self.best_objective, self.best_epoch = current, self.epoch
            self.best_generators = [{k: v.detach().cpu().clone() for k, v in
                                     self.eval_generator(i).state_dict().items()}
                                    for i in range(self.graph.k)]
        if self.epoch >= self.config.epochs:
            self.status = "completed"
        row.update(status=self.status, objective=self.best_objective,
                   objective_now=current, best_epoch=self.best_epoch,
                   train_s=t1 - t0, eval_s=time.perf_counter() - t1)
        self.history.append(row)
        return row

    def best_objective_or_nan(self) -> float:
        return self.best_objective if math.isfinite(self.best_objective) else float("nan")

    def load_best(self) -> None:
        """Put the evaluated weights of the best epoch (by the objective) in place: into
        the EMA copies when the EMA is on (they are what was scored), else the generators."""
        if self.best_generators is not None:
            for i, sd in enumerate(self.best_generators):
                self.eval_generator(i).load_state_dict(sd)

    def fit(self, on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
        """Train until `epochs` or divergence; `on_epoch(row)` after every epoch."""
        while self.epoch < self.config.epochs and self.status == "running":
            row = self.run_epoch()
            if on_epoch:
                on_epoch(row)
        return self.history

"""The literal reference: the paper's iteration written out plainly, to check the engine.

`ReferenceTrainer` starts from an engine's (`Trainer`'s) weights and does one iteration the
long way; `equivalence` runs both on the same batches and z and reports how far their
losses are apart. `ktg bench` (bench.py) runs it and times both sides. Nothing here is
shared with the engine's step: the model classes and the loss formulas (losses.py) are
public, but the gates, the `correct` gate's verdict and the loop are written again below.

The reference (Sec. 3.3 of "Collaborative learning of GANs"):
  D, steps 1-3: a pass over the real batch (class k+1), then one pass per generator over
    its own fake batch (class i, every generator its own z); each pass is backward'ed as it
    comes (gradients accumulate) and D takes one optimizer step.
  G: one z for every generator; for each learning generator t separately,
    L_t = Gate_{D,t}(L_{D,t}) + sum_{s != t} Gate_{s,t}(L_{s,t}), sources detached, every
    edge computed even when its gate weight is zero (the gate multiplies it), one D pass
    per generator, one backward and one Adam step (its own optimizer) per generator.

Two points where "the same algorithm" needs a reading, both handled in the open:
- Loss scale. Eq. 1 is per sample. The engine takes the mean over the (k+1)*b samples of
  the concatenated batch; summing the k+1 pass means gives k+1 times that. The reference
  divides each pass mean by k+1, so that its summed D loss *is* the mean of eq. 1 over
  all samples (a constant factor would only matter to Adam through eps anyway).
- Spectral norm. torch's `spectral_norm` runs one power iteration on every forward call
  in training mode. The engine calls D once per D step and once per G step, so it runs
  2 power iterations per iteration; a literal reference with k+1 D passes and k G passes
  would run 2k+1, i.e. estimate sigma differently - a different D, not a different loss
  formula. The reference therefore runs the power iteration on the first D call of each
  phase and uses that same u, v (the same W / sigma) for the other calls of the phase
  (`same_sigma`), which is SN's own rule (one power iteration per update of W). With
  `sn="per_call"` it keeps torch's default instead; the benchmark reports the loss
  difference this makes, so the size of the effect is measured rather than assumed.

The gates (Gate_{s,t} of eq. 6 in "Knowledge Transfer Graph", DESIGN.md) are written out
here as a factor on the per-sample loss, not taken from gates.py:
  through 1, cutoff 0, linear_up p, linear_down 1 - p, and correct (KTG eq. 7: a passes
  only the samples on which the source is right). On a transfer edge s -> t the source is
  G_s: it is right where D's top-1 class over its k+1 outputs for G_s(z) is the real
  class (index k). On D -> t the source is D: it is right where its top-1 class for
  G_t(z) is not the real class (it catches the fake).
"""
from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
from torch import Tensor, nn

from .graph import Graph
from .losses import (discriminator_loss, fake_class, feature_transfer_loss,
                     generator_adversarial_loss, image_transfer_loss)
from .models import same_sigma
from ..registry import DISCRIMINATORS, GENERATORS, TRANSFERS
from .trainconfig import TrainConfig
from .training import Trainer
from .steps import read_losses


def gate_factor(gate: str, progress: float, source_right: Tensor) -> Tensor | None:
    """Gate_{s,t} as a per-sample factor [B] at progress p (see the module docstring);
    `source_right` is the correct gate's verdict, True where the source is right. None
    for cutoff: the edge is cut and its loss is not computed at all (DESIGN.md)."""
    ones = torch.ones(source_right.shape[0], device=source_right.device)
    if gate == "cutoff":
        return None
    if gate == "through":
        return ones
    if gate == "linear_up":
        return ones * progress
    if gate == "linear_down":
        return ones * (1.0 - progress)
    if gate == "correct":
        return source_right.float()
    raise ValueError(f"the reference has no gate {gate!r}; it knows through, cutoff, "
                     f"linear_up, linear_down, correct")


class ReferenceTrainer:
    """The paper's iteration written out literally, started from an engine's weights.

    Same model classes and public loss functions, its own gates (`gate_factor`),
    per-generator Adam optimizers,
    its own z generator seeded like the engine's. `sn` is "once_per_phase" (the default,
    see the module docstring) or "per_call" (torch's default: one power iteration on every
    D forward).
    """

    def __init__(self, engine: Trainer, sn: str = "once_per_phase") -> None:
        if sn not in ("once_per_phase", "per_call"):
            raise ValueError(f"The value of `sn` is {sn!r}, but must be one of "
                             f"once_per_phase, per_call")
        cfg, graph = engine.config, engine.graph
        self.graph, self.config, self.sn = graph, cfg, sn
        self.k, self.nz = graph.k, cfg.nz
        channels = engine.data.channels
        self.generators = []
        for i, node in enumerate(graph.nodes):
            g = GENERATORS.get(node.model)(cfg.image_size, channels, cfg.nz)
            g.load_state_dict(engine.generators[i].state_dict())
            g.train()
            self.generators.append(g.to(engine.device))
        # the kind the engine built (graph's normalisation, recipe's architecture)
        self.D = DISCRIMINATORS.get(engine.d_kind)(cfg.image_size, channels, self.k + 1,
                                                   cfg.d_width)
        self.D.load_state_dict(engine.D.state_dict())
        self.D.train().to(engine.device)
        self.device = engine.device
        self.learning = graph.learning_nodes()
        for i in range(self.k):
            self.generators[i].requires_grad_(i in self.learning)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=betas)
        self.opt_g = {t: torch.optim.Adam(self.generators[t].parameters(), lr=cfg.lr_g,
                                          betas=betas) for t in self.learning}
        self.transfer = TRANSFERS.get(graph.transfer)
        self.rng = torch.Generator().manual_seed(cfg.seed)  # ours, seeded like the engine's
        self.total_iters = engine.total_iters
        self.iteration = engine.iteration
        # the resolution-aware weight: per compared map, alpha * N / N_ref, with N_ref the
        # size of the same map of the same generator built at the paper's 64 px
        self.alpha_scale: list[float] | None = None
        if cfg.transfer_scale == "resolution":
            g64 = GENERATORS.get(graph.nodes[0].model)(64, channels, cfg.nz)
            g_s = GENERATORS.get(graph.nodes[0].model)(cfg.image_size, channels, cfg.nz)
            with torch.no_grad():
                z = torch.zeros(1, cfg.nz)
                (i64, t64), (i_s, t_s) = g64(z), g_s(z)
            if self.transfer.layers is None:
                self.alpha_scale = [i_s[0].numel() / i64[0].numel()]
            else:
                self.alpha_scale = [t_s[m][0, 0].numel() / t64[m][0, 0].numel()
                                    for m in self.transfer.layers]
        # the EMA of every learning generator's state, our own copy of the schedule
        self.ema: dict[int, dict[str, Tensor]] | None = None
        if cfg.ema_decay > 0:
            self.ema = {t: {n: v.detach().clone() for n, v in
                            self.generators[t].state_dict().items()} for t in self.learning}

    def param_pairs(self, engine: Trainer) -> list[tuple[str, nn.Parameter, nn.Parameter,
                                                          torch.optim.Optimizer,
                                                          torch.optim.Optimizer]]:
        """(name, engine parameter, our parameter, engine optimizer, our optimizer)."""
        pairs = [(f"D.{n}", pe, pr, engine.opt_d, self.opt_d) for (n, pe), pr in
                 zip(engine.D.named_parameters(), self.D.parameters(), strict=True)]
        for t, opt in self.opt_g.items():
            pairs += [(f"G{t}.{n}", pe, pr, engine.opt_g, opt) for (n, pe), pr in
                      zip(engine.generators[t].named_parameters(),
                          self.generators[t].parameters(), strict=True)]
        return pairs

    def sync_from(self, engine: Trainer) -> None:
        """Take over the engine's whole state: weights, BN statistics, SN vectors, Adam
        moments and step counts, the z generator's state and the iteration."""
        for g, ge in zip(self.generators, engine.generators, strict=True):
            g.load_state_dict(ge.state_dict())
        self.D.load_state_dict(engine.D.state_dict())
        if self.ema is not None:
            for t in self.ema:
                self.ema[t] = {n: v.detach().clone() for n, v in
                               engine.ema.module(t).state_dict().items()}
        for _, pe, pr, opt_e, opt_r in self.param_pairs(engine):
            if pe in opt_e.state:
                opt_r.state[pr] = {key: v.clone() if torch.is_tensor(v) else v
                                   for key, v in opt_e.state[pe].items()}
            else:
                opt_r.state.pop(pr, None)
        self.rng.set_state(engine.rng.get_state())
        self.iteration = engine.iteration

    def _d_call(self, first: bool):
        """Context for one D forward: the power iteration runs on the phase's first call."""
        if first or self.sn == "per_call":
            return contextlib.nullcontext()
        return same_sigma(self.D)

    def train_step(self, real: Tensor) -> dict[str, float]:
        k, nz, dev, D = self.k, self.nz, self.device, self.D
        b = real.shape[0]
        real = real.to(dev)
        p = min(1.0, self.iteration / max(1, self.total_iters))
        z_d = torch.randn(k, b, nz, generator=self.rng).to(dev)  # a z per generator

        # ---- D: step 1 (real, class k+1), steps 2-3 (G_i's images, class i), summed.
        # Weights of the pass means: uniform = every sample alike, 1/(k+1) per pass;
        # paper_steps = steps 1 and 2 repeated k times, so the real pass is half of the
        # loss and each generator's pass 1/(2k)
        if self.config.d_loss_weighting == "paper_steps":
            w_real, w_fake = 0.5, 1.0 / (2 * k)
        else:
            w_real = w_fake = 1.0 / (k + 1)
        D.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        with self._d_call(first=True):
            loss = discriminator_loss(D(real), torch.full((b,), k, dtype=torch.long,
                                                          device=dev)).mean() * w_real
        loss.backward()
        d_loss = loss.item()
        for i in range(k):
            with torch.no_grad():
                fake = self.generators[i](z_d[i])[0]
            with self._d_call(first=False):
                label = fake_class(i, self.config.d_classes)
                loss = discriminator_loss(D(fake), torch.full((b,), label, dtype=torch.long,
                                                              device=dev)).mean() * w_fake
            loss.backward()
            d_loss += loss.item()
        self.opt_d.step()

        # ---- G: the same z for every generator, each generator's loss on its own
        z = torch.randn(b, nz, generator=self.rng).to(dev)  # one z for every generator
        D.requires_grad_(False)
        outs, logits = [], []
        for i in range(k):
            with torch.set_grad_enabled(i in self.opt_g):
                outs.append(self.generators[i](z))
        for i in range(k):
            with self._d_call(first=i == 0):
                logits.append(D(outs[i][0]))
        # the correct gate's verdict, from D's top-1 class (index k = real): G_s is right
        # where D takes G_s(z) for real (s -> t); D is right where it does not take G_t(z)
        # for real (D -> t)
        top1 = [lg.detach().argmax(dim=1) for lg in logits]
        g_right = [top1[i] == k for i in range(k)]
        d_right = [top1[i] != k for i in range(k)]
        losses = {"d_loss": d_loss}
        for t in self.learning:
            l_t = torch.zeros(b, device=dev)
            w = gate_factor(self.graph.gate("D", t), p, d_right[t])
            if w is not None:
                l_t = l_t + generator_adversarial_loss(logits[t]) * w
            for s in range(k):
                w = gate_factor(self.graph.gate(s, t), p, g_right[s]) if s != t else None
                if w is None:
                    continue
                src = (outs[s][0].detach(), [f.detach() for f in outs[s][1]])
                l_t = l_t + self._transfer_loss(src, outs[t]) * w
            l_t = l_t.mean()
            opt = self.opt_g[t]
            opt.zero_grad(set_to_none=True)
            if l_t.requires_grad:
                l_t.backward()
            opt.step()
            losses[f"g_loss_{t}"] = l_t.item()
        self.iteration += 1
        self._ema_update()
        return losses

    def _transfer_loss(self, src, dst) -> Tensor:
        """Eq. 3-4 or 5 through the public loss; resolution-aware: the same equation per
        compared map with alpha * N / N_ref, averaged over the M maps."""
        alpha = self.graph.alpha
        if self.alpha_scale is None:
            return self.transfer(src, dst, alpha)
        if self.transfer.layers is None:
            return image_transfer_loss(src[0], dst[0], alpha * self.alpha_scale[0])
        return sum(feature_transfer_loss([src[1][m]], [dst[1][m]], alpha * sc)
                   for m, sc in zip(self.transfer.layers, self.alpha_scale, strict=True)) \
            / len(self.alpha_scale)

    @torch.no_grad()
    def _ema_update(self) -> None:
        """ema = live for n <= ema_start, else decay * ema + (1 - decay) * live, for
        weights and batch-norm statistics; integer counters copied."""
        if self.ema is None:
            return
        d, n = self.config.ema_decay, self.iteration
        for t, avg in self.ema.items():
            for name, v in self.generators[t].state_dict().items():
                if n <= self.config.ema_start or not v.is_floating_point():
                    avg[name] = v.detach().clone()
                else:
                    avg[name] = d * avg[name] + (1 - d) * v.detach()


def _loss_diff(a: dict[str, float], b: dict[str, float]) -> float:
    """Largest |a - b| over every loss either side reports (a missing loss counts as 0:
    the engine leaves out a generator none of whose edges is active right now)."""
    diff = 0.0
    for key in set(a) | set(b):
        x, y = a.get(key, 0.0), b.get(key, 0.0)
        if not (math.isfinite(x) and math.isfinite(y)):
            return float("inf")
        diff = max(diff, abs(x - y))
    return diff


def _adam_step(opt: torch.optim.Optimizer, p: Tensor) -> int:
    st = opt.state.get(p, {}).get("step", 0)
    return int(st.item() if torch.is_tensor(st) else st)


def equivalence(graph: Graph, config: TrainConfig, data, batches: list[Tensor],
                sn: str = "once_per_phase", stepwise: bool = False) -> dict[str, Any]:
    """Engine and reference from the same weights on the same batches: loss differences.

    Free-running (`stepwise=False`): both run on from identical initial weights, so
    differences can grow step by step. Stepwise: before every step the reference takes over
    the engine's whole state (`sync_from`), so each step is compared from identical state;
    that isolates the algorithm from the amplification of rounding differences (Adam's
    first steps turn a noise-level gradient into a +-lr update, and a `correct` gate's
    argmax flips a whole sample on a near tie).
    """
    engine = Trainer(graph, config, data=data)
    ref = ReferenceTrainer(engine, sn=sn)
    per_step, param_diff = [], 0.0
    for real in batches:
        if stepwise:
            ref.sync_from(engine)
        le, lr = read_losses(engine.train_step(real)), ref.train_step(real)
        per_step.append(_loss_diff(le, lr))
    pairs = ref.param_pairs(engine)
    param_diff = max((pe - pr).abs().max().item() for _, pe, pr, _, _ in pairs)
    adam_mismatch = [n for n, pe, pr, oe, orf in pairs
                     if _adam_step(oe, pe) != _adam_step(orf, pr)]
    # the EMA after the last step: the engine's copies against the reference's own
    # schedule (re-synced runs: from the same EMA state before the step)
    ema_diff = None
    if ref.ema is not None:
        ema_diff = max((v.float() - ref.ema[t][n].float()).abs().max().item()
                       for t in ref.ema for n, v in engine.ema.module(t).state_dict().items())
    return {"max_loss_diff": max(per_step), "per_step": per_step,
            "max_param_diff": param_diff, "adam_step_mismatch": adam_mismatch,
            "ema_diff": ema_diff, "d_kind": engine.d_kind,
            "same_z": bool(torch.equal(engine.rng.get_state(), ref.rng.get_state())),
            "engine_losses": le, "reference_losses": lr}

"""Several discriminators (a graph with `discriminators` m >= 2): the networks, their
optimizers, the regrouping state and one training iteration.

The rule (DESIGN.md's edge direction holds: D_j -> t trains t only):
  * D_j is its own network (the graph's discriminator kind, k+1 softmax outputs as the
    single D has: class i = G_i, class k = real) with its own Adam. It trains on real
    images and on the generators it *faces*: those of its edges that are not cutoff
    (under regrouping: the edges of the role it plays now, see regroup.py). Its batch
    holds only those classes; the outputs of the generators it does not face are never a
    label, so they are only pushed down by the softmax. One cross-entropy over real + the
    faced parts, as the single D's eq. 1 (`paper_steps` weighting: real half 1/2, each
    faced generator 1/(2n), n = how many it faces). Every D_j sees the same fakes
    G_i(z_i) of the iteration (one z per generator), and D steps run one after another.
  * Generator t: L_t = sum_j Gate_{D_j,t}(L_{D_j,t}) + sum_{s != t} Gate_{s,t}(L_{s,t}),
    L_{D_j,t} the non-saturating loss of D_j on G_t(z) (losses.generator_adversarial_loss).
    A `correct` gate on s -> t asks whether "D" calls G_s's image real: here the D of the
    lowest-numbered role that faces s, else role 0's network.
  * With m = 1 none of this runs: `Trainer.train_step` is today's code, bit for bit.
m discriminators cost m D steps and up to m judging passes in the G step.
Like the one-D step it reads no value back from the device (steps.py), with one exception:
MGGAN's learning-rate rule (regroup.LrRule) compares the mean G loss of consecutive
iterations near each regrouping and sets the next iteration's rate from it, so the step
reads that loss (one synchronisation) at those iterations only (`LrRule.needs_loss`),
never elsewhere, and never without an `lr_rule`.
"""
from __future__ import annotations


import torch
from torch import Tensor, nn

from .graphforms import d_names
from .losses import discriminator_loss, fake_class, generator_adversarial_loss
from .models import same_sigma
from .regroup import LrRule, roles_at
from .steps import read_losses, to_device
from ..registry import DISCRIMINATORS, GATES


class MultiD:
    """The discriminators D1..D(m-1) beside the trainer's own `D` (which is D0), their
    optimizers, and the pairing (`roles[r]`: the network that plays D_r now)."""

    def __init__(self, trainer) -> None:
        t, cfg = trainer, trainer.config
        self.t = trainer
        self.m = t.graph.m
        self.names = d_names(self.m)
        betas = (cfg.beta1, cfg.beta2)
        extra = [DISCRIMINATORS.get(t.d_kind)(cfg.image_size, t.data.channels, t.graph.k + 1,
                                              cfg.d_width).to(t.device)
                 for _ in range(self.m - 1)]
        if t.device.type == "cpu":
            for d in extra:
                d.to(memory_format=torch.channels_last)
        self.nets = [t.D] + extra
        self.extra = nn.ModuleList(extra)
        self.opts = [t.opt_d] + [torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=betas)
                                 for d in extra]
        self.regroup = t.graph.regroup
        self.lr = LrRule(self.regroup) if self.regroup and self.regroup["lr_rule"] else None
        self.roles, self.regroupings = roles_at(self.regroup, self.m, t.iteration)

    # ---- pairing -----------------------------------------------------------------------
    def sync_roles(self) -> None:
        """The pairing for the iteration about to be trained (a pure function of the
        graph's regroup seed and the iteration count, regroup.py)."""
        if self.regroup:
            self.roles, self.regroupings = roles_at(self.regroup, self.m, self.t.iteration)

    def faced(self, net: int) -> list[int]:
        """The generators network `net` faces now: those of the role it plays."""
        role = self.roles.index(net)
        return self.t.graph.faced(self.names[role])

    def verdict_net(self, s: int) -> int:
        """The network whose verdict on G_s a `correct` gate reads."""
        for r, name in enumerate(self.names):
            if self.t.graph.gate(name, s) != "cutoff":
                return self.roles[r]
        return self.roles[0]

    def _discriminate(self, net: int, parts: list[Tensor]) -> Tensor:
        d = self.nets[net]
        if not self.t.d_per_part or len(parts) == 1:
            return d(torch.cat(parts))
        out = [d(parts[0])]
        with same_sigma(d):
            out += [d(x) for x in parts[1:]]
        return torch.cat(out)

    # ---- one iteration -----------------------------------------------------------------
    def step(self, real: Tensor) -> dict[str, float]:
        """One D step per discriminator and one G step; the trainer's losses row (d_loss
        is the mean over the discriminators, d_loss_{j} each one's)."""
        t = self.t
        self.sync_roles()
        k, nz, dev = t.graph.k, t.config.nz, t.device
        b = real.shape[0]
        real = to_device(real, dev).float()
        p = t.progress()
        for d in self.extra:
            d.train(t.D.training)

        z_d = t.noise.randn(k, b, nz)
        with torch.no_grad(), t._autocast():
            fakes = [t.generators[i](z_d[i])[0].float() for i in range(k)]
        losses: dict[str, Tensor] = {}
        for j in range(self.m):
            faced = self.faced(j)
            labels = torch.cat([torch.full((b,), k, dtype=torch.long, device=dev)] +
                               [torch.full((b,), fake_class(i, t.config.d_classes),
                                           dtype=torch.long, device=dev) for i in faced])
            self.nets[j].requires_grad_(True)
            with t._autocast():
                per_sample = discriminator_loss(
                    self._discriminate(j, [real] + [fakes[i] for i in faced]), labels)
            if t.config.d_loss_weighting == "paper_steps":
                n = len(faced)
                per_sample = per_sample * torch.where(labels == k, (n + 1) / 2,
                                                      (n + 1) / (2 * n))
            d_loss = per_sample.mean()
            self.opts[j].zero_grad(set_to_none=True)
            d_loss.backward()
            self.opts[j].step()
            losses[f"d_loss_{j}"] = d_loss.detach()
        # their mean in float64, added in order: what Python's floats gave
        mean = losses["d_loss_0"].double()
        for j in range(1, self.m):
            mean = mean + losses[f"d_loss_{j}"]
        losses = {"d_loss": mean / self.m, **losses}

        z = t.noise.randn(b, nz)
        for d in self.nets:
            d.requires_grad_(False)
        srcs = [*self.names, *range(k)]
        active = {(s, u): g for u in t.learning for s in srcs
                  if s != u and GATES.get(g := t.graph.gate(s, u)).is_active(p)}
        # per network, the generators it judges in this G step
        judged: dict[int, set[int]] = {}
        for (s, u), g in active.items():
            if isinstance(s, str):
                judged.setdefault(self.roles[self.names.index(s)], set()).add(u)
            elif GATES.get(g).needs_verdict:
                judged.setdefault(self.verdict_net(s), set()).add(s)
        with t._autocast():
            outs = t.generate(z)
            logits: dict[tuple[int, int], Tensor] = {}
            for net, gens in sorted(judged.items()):
                order = sorted(gens)
                out = self._discriminate(net, [outs[i][0] for i in order]).float()
                logits.update({(net, i): lg for i, lg in
                               zip(order, out.view(len(order), b, k + 1), strict=True)})
        said_real = {key: lg.detach().argmax(dim=1) == k for key, lg in logits.items()}

        def adversarial(u: int) -> list[Tensor]:
            """Sum over j of Gate_{D_j,u}(L_{D_j,u}): one term per D facing u now."""
            terms = []
            for r, name in enumerate(self.names):
                if (name, u) in active:
                    key = (self.roles[r], u)
                    adv = generator_adversarial_loss(logits[key])
                    terms.append(GATES.get(active[name, u])(adv, p, ~said_real[key]))
            return terms
        losses = t.generator_update(outs, active, p, adversarial,
                                    lambda s: said_real.get((self.verdict_net(s), s)), losses)
        if self.lr is not None:
            loss = None
            if self.lr.needs_loss(t.iteration):  # the one read back: see the docstring
                g_losses = read_losses({key: v for key, v in losses.items()
                                        if key.startswith("g_loss_")}).values()
                loss = sum(g_losses) / max(1, len(g_losses))
            self.set_lr(self.lr.update(t.iteration, loss))
        return losses

    def set_lr(self, factor: float) -> None:
        """Algorithm 1's factor on every optimizer: lr_g * factor, lr_d * factor."""
        cfg = self.t.config
        for opt, base in [(self.t.opt_g, cfg.lr_g)] + [(o, cfg.lr_d) for o in self.opts]:
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = base * factor

    # ---- checkpoint --------------------------------------------------------------------
    def state_dict(self) -> dict:
        """D1..D(m-1) and their optimizers (D0 is the checkpoint's `D`), the pairing and
        the learning-rate rule's state."""
        return {"D": [d.state_dict() for d in self.extra],
                "opt_d": [o.state_dict() for o in self.opts[1:]],
                "roles": list(self.roles), "regroupings": self.regroupings,
                "lr_rule": self.lr.state_dict() if self.lr is not None else None}

    def load_state_dict(self, state: dict) -> None:
        for d, sd in zip(self.extra, state["D"], strict=True):
            d.load_state_dict(sd)
        for o, sd in zip(self.opts[1:], state["opt_d"], strict=True):
            o.load_state_dict(sd)
        if self.lr is not None and state.get("lr_rule") is not None:
            self.lr.load_state_dict(state["lr_rule"])
            self.set_lr(self.lr.factor())

"""The generator EMA (ema.py) against its schedule computed by hand, alone and inside real
training: ema_n = w_n for n <= start, else d * ema_{n-1} + (1 - d) * w_n, i.e.
ema_n = d^(n-s) w_s + (1 - d) sum_{j=s+1..n} d^(n-j) w_j."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ktg_search.method.ema import GeneratorEMA
from ktg_search.method.graph import resolve_graph
from ktg_search.method.trainconfig import TrainConfig
from ktg_search.method.training import Trainer

torch.set_num_threads(1)


def closed_form(ws: list[np.ndarray], n: int, decay: float, start: int) -> np.ndarray:
    """ws[j] = the live value after update j (ws[0]: at construction); from the formula."""
    if n <= start:
        return ws[n]
    out = decay ** (n - start) * ws[start]
    for j in range(start + 1, n + 1):
        out = out + (1 - decay) * decay ** (n - j) * ws[j]
    return out


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.bn = nn.BatchNorm1d(2)


def _set_live(m: Tiny, rng: np.random.Generator) -> dict[str, np.ndarray]:
    vals = {}
    with torch.no_grad():
        for name, t in list(m.named_parameters()) + list(m.named_buffers()):
            if t.is_floating_point():
                v = rng.normal(size=tuple(t.shape))
                t.copy_(torch.tensor(v))
                vals[name] = v
            else:
                t.add_(1)
                vals[name] = t.numpy().copy()
    return vals


@pytest.mark.parametrize("decay,start", [(0.9, 0), (0.9, 3), (0.5, 1), (0.99, 6)])
@pytest.mark.parametrize("buffers", ["average", "copy"])
def test_ema_follows_the_schedule(decay, start, buffers):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    live = nn.ModuleList([Tiny(), Tiny()])
    hist = [_set_live(live[1], rng)]
    ema = GeneratorEMA(live, [1], decay, start, buffers=buffers)
    assert ema.module(0) is None  # only the nodes asked for
    for n in range(1, 9):
        hist.append(_set_live(live[1], rng))
        ema.update(n)
        got = dict(ema.module(1).named_parameters())
        got.update(dict(ema.module(1).named_buffers()))
        assert len(got) == len(hist[0]), sorted(got)  # Tiny's 4 parameters and 3 buffers
        for name, t in got.items():
            seq = [h[name] for h in hist]
            if name == "bn.num_batches_tracked" or (buffers == "copy" and name.startswith(
                    "bn.running")):
                want = seq[-1]  # copied, not averaged
            else:
                want = closed_form(seq, n, decay, start)
            np.testing.assert_allclose(t.detach().numpy(), want, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name} after update {n}")


@pytest.mark.parametrize("bad,name", [(dict(decay=1.0), "decay"), (dict(decay=0.0), "decay"),
                                      (dict(decay=0.9, start=-1), "start"),
                                      (dict(decay=0.9, buffers="median"), "buffers")])
def test_bad_ema_settings_are_named(bad, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        GeneratorEMA(nn.ModuleList([Tiny()]), [0], **bad)


def _cfg(**kw) -> TrainConfig:
    base = dict(dataset="digits", image_size=16, batch_size=32, epochs=2, device="cpu",
                eval_samples=200, max_iters_per_epoch=5, lr_g=1e-3, beta1=0.0)
    base.update(kw)
    return TrainConfig(**base)


def test_trainer_ema_follows_the_schedule_in_real_training(digits16, evaluator16):
    decay, start = 0.8, 2
    t = Trainer(resolve_graph("mad-gan-2"), _cfg(ema_decay=decay, ema_start=start),
                data=digits16, evaluator=evaluator16)
    snaps = [{n: p.detach().double().numpy().copy()
              for n, p in t.generators[1].named_parameters()}]
    for x in [b for _, b in zip(range(5), digits16.batches(32, torch.Generator()))]:
        t.train_step(x)
        snaps.append({n: p.detach().double().numpy().copy()
                      for n, p in t.generators[1].named_parameters()})
    assert t.iteration == 5
    wrong_start = 0
    for n, p in t.ema.module(1).named_parameters():
        want = closed_form([s[n] for s in snaps], 5, decay, start)
        np.testing.assert_allclose(p.detach().numpy(), want, rtol=1e-4, atol=1e-6,
                                   err_msg=n)
        other = closed_form([s[n] for s in snaps], 5, decay, 0)
        wrong_start += not np.allclose(p.detach().numpy(), other, rtol=1e-4, atol=1e-6)
    assert wrong_start > 0  # the check tells start 2 from start 0
    # and the live weights moved away from the average: the check sees a difference
    assert any(not torch.allclose(p, q) for p, q in zip(
        t.generators[1].parameters(), t.ema.module(1).parameters()))


def test_evaluation_samples_and_best_weights_use_the_ema(digits16, evaluator16, tmp_path):
    t = Trainer(resolve_graph("mad-gan-2"), _cfg(ema_decay=0.5, epochs=1), data=digits16,
                evaluator=evaluator16)
    t.run_epoch()
    z = torch.randn(8, 100, generator=torch.Generator().manual_seed(0))
    ema_g, live = t.ema.module(0), t.generators[0]
    with torch.no_grad():
        ema_img = ema_g.eval()(z)[0]
        live_img = live.eval()(z)[0]
    assert not torch.allclose(ema_img, live_img, atol=1e-4)
    torch.testing.assert_close(t.sample(0, 8, z=z), ema_img)
    for key, v in ema_g.state_dict().items():
        assert torch.equal(t.best_generators[0][key], v), key
    # an exported generator is the evaluated one
    t.export_generator(0, tmp_path / "g.pt")
    saved = torch.load(tmp_path / "g.pt", weights_only=False)["generator"]
    assert all(torch.equal(saved[k], v) for k, v in ema_g.state_dict().items())


def test_ema_state_is_saved_and_a_restored_run_continues_it(digits16, evaluator16, tmp_path):
    c = _cfg(ema_decay=0.7, ema_start=1)
    a = Trainer(resolve_graph("mad-gan-2"), c, data=digits16, evaluator=evaluator16)
    a.train_epoch()
    a.train_epoch()
    b = Trainer(resolve_graph("mad-gan-2"), c, data=digits16, evaluator=evaluator16)
    b.train_epoch()
    b.save(tmp_path / "ck.pt")
    r = Trainer.restore(tmp_path / "ck.pt", data=digits16, evaluator=evaluator16)
    for i in (0, 1):
        for p, q in zip(b.ema.module(i).state_dict().values(),
                        r.ema.module(i).state_dict().values()):
            assert torch.equal(p, q)
    r.train_epoch()
    for i in (0, 1):
        for p, q in zip(a.ema.module(i).state_dict().values(),
                        r.ema.module(i).state_dict().values()):
            assert torch.equal(p, q)
    # a checkpoint without EMA state cannot silently restart the average
    state = b.state_dict()
    state["ema"] = None
    with pytest.raises(Exception, match="EMA"):
        Trainer(resolve_graph("mad-gan-2"), c, data=digits16,
                evaluator=evaluator16).load_state_dict(state)


def test_ema_off_is_the_paper_and_evaluates_the_live_generator(digits16, evaluator16):
    t = Trainer(resolve_graph("dcgan-sn"), _cfg(), data=digits16, evaluator=evaluator16)
    assert TrainConfig().ema_decay == 0.0 and t.ema is None
    assert t.eval_generator(0) is t.generators[0]


@pytest.mark.parametrize("field,value,rule", [("ema_decay", 1.0, "ema_decay"),
                                              ("ema_decay", -0.1, "ema_decay"),
                                              ("ema_start", -1, "ema_start"),
                                              ("ema_start", 1.5, "ema_start")])
def test_bad_ema_config_is_one_clear_message(field, value, rule):
    with pytest.raises(Exception, match=f"`{rule}` is {value!r}"):
        _cfg(**{field: value}).validate()

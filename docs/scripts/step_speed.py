"""Training-step speed of two checkouts, alternated in fresh interpreters (issue 23: "the
CPU path keeps its speed").

    python docs/scripts/step_speed.py BEFORE_CHECKOUT AFTER_CHECKOUT [ROUNDS] [STEPS]

Each round starts one interpreter per checkout (order alternating), builds the engine's
`Trainer` for `through-3` on the synthetic data set at 32 px, batch 64 (the bench's case),
runs 2 warm-up steps and times STEPS `train_step` calls on the same batches. It prints
steps per second per round and the after/before ratio of the min and median step times:
one run, so the machine's noise falls on both sides alike.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, time, torch
torch.set_num_threads(int(__import__('os').environ.get('KTG_THREADS', '2')))
from ktg_search.data.loading import load_dataset
from ktg_search.method.graph import resolve_graph
from ktg_search.method.trainconfig import TrainConfig
from ktg_search.method.training import Trainer
steps = int(__import__('sys').argv[1])
cfg = TrainConfig(dataset="synthetic", image_size=32, batch_size=64, epochs=1,
                  device="cpu", fid=False, eval_samples=10, seed=0)
data = load_dataset(cfg.dataset, cfg.image_size)
trainer = Trainer(resolve_graph("through-3"), cfg, data=data, evaluator=object())
gen = torch.Generator().manual_seed(0)
batches = []
while len(batches) < steps + 2:
    for real in data.batches(64, gen):
        if real.shape[0] == 64:
            batches.append(real.float())
        if len(batches) == steps + 2:
            break
for real in batches[:2]:
    trainer.train_step(real)
times = []
for real in batches[2:]:
    t0 = time.perf_counter()
    trainer.train_step(real)
    times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""


def one(checkout: str, steps: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": checkout}
    out = subprocess.run([sys.executable, "-c", CHILD, str(steps)], env=env, cwd=checkout,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    before, after = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    steps = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    got: dict[str, list[float]] = {"before": [], "after": []}
    for r in range(rounds):
        order = [("before", before), ("after", after)]
        for name, path in (order if r % 2 == 0 else order[::-1]):
            t = one(path, steps)
            got[name] += t
            print(f"round {r + 1} {name:6s} {1 / statistics.median(t):6.2f} steps/s "
                  f"(median of {len(t)})", flush=True)
    mins = {k: min(v) for k, v in got.items()}
    meds = {k: statistics.median(v) for k, v in got.items()}
    print(f"step time after/before: min {mins['after'] / mins['before']:.3f}x, "
          f"median {meds['after'] / meds['before']:.3f}x "
          f"(before {meds['before'] * 1e3:.0f} ms, after {meds['after'] * 1e3:.0f} ms median)")


if __name__ == "__main__":
    main()

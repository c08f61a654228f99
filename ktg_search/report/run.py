"""The run as the report reads it: `RunView` (run.json, the tables, the ranking) and
`Missing`, what a section raises when the run does not hold what it needs.

Everything is read once, in `open_run`, and checked as data (runinfo.py, the results
readers); the view is immutable, so every section sees the same run. Two costly values
several sections share are the view's own, cached on first use: `data()` (the data set)
and `best_trainer(top)` (the best restorable top graph, with `restore_best`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..search.config import SearchConfig
from ..errors import KtgError
from ..files.fileio import latest_checkpoint
from ..results.book import load_history, load_results
from .tables import ranked_trials


class Missing(Exception):
    """A part that cannot be drawn from what the run holds; the message is the note."""


@dataclass(frozen=True, eq=False)
class RunView:
    """One run directory, read: `info` is run.json, `cfg` its `SearchConfig`, `results`
    one row per trial, `history` one row per trial and epoch, `ranked` the results in
    ranking order (`tables.ranked_trials`)."""
    path: Path
    info: dict
    cfg: SearchConfig
    results: Any
    history: Any
    ranked: Any
    # values derived once per view (data(), best_trainer()); never a section's output
    _cache: dict = field(default_factory=dict, repr=False)

    def _once(self, key: Any, compute: Callable[[], Any]) -> Any:
        # a failure is not kept: asking again tries again, as a fresh view would
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def data(self):
        """The data set the run searched on (`load_run_data`), loaded on first use."""
        return self._once("data", lambda: load_run_data(self))

    def best_trainer(self, top: int):
        """(rank, results row, trainer) of the best of the first `top` ranked graphs
        whose checkpoint restores, with its best epoch's weights in place; restored on
        first use, so the sample grid and the t-SNE show the same weights. Missing when
        none of them has a usable checkpoint."""
        return self._once(("best_trainer", top), lambda: _best_restorable(self, top))

    @property
    def k(self) -> int:
        return self.cfg.space.k

    @property
    def scored_nodes(self) -> list[int]:
        """The generators a trial's objective looks at: node 0 with a target node, else
        all (as `Trainer.scored_nodes` for a graph without frozen teachers)."""
        return [0] if self.cfg.space.target_node else list(range(self.k))

    @property
    def name(self) -> str:
        return str(self.info.get("name", self.path.name))


def open_run(run: str | Path) -> RunView:
    """Read a run directory; KtgError when it is not one."""
    p = Path(run).expanduser()
    if not p.exists():
        raise KtgError(f"run directory {str(p)!r} does not exist; a run directory is what "
                       f"`ktg search` prints as 'run dir'")
    if not p.is_dir():
        raise KtgError(f"{str(p)!r} is a file, not a run directory; a run directory is "
                       f"what `ktg search` prints as 'run dir'")
    from ..search.runinfo import read_run_info
    info = read_run_info(p)  # every field checked (types, ranges)
    results = load_results(p)
    history = load_history(p)
    return RunView(p.resolve(), info, info["config"], results, history,
                   ranked_trials(results))


def load_run_data(run: RunView):
    """The data set the run searched on (its name, image size and data root)."""
    from ..data.loading import load_dataset
    c = run.cfg.train
    return load_dataset(c.dataset, c.image_size, root=c.data_root)


def restore_best(run_dir: str | Path, trial_id: str, data=None, evaluator=None):
    """(trainer, checkpoint path): the trial's newest checkpoint with the generator
    weights of its best epoch in place (`Trainer.load_best`). Missing when Tune kept
    no checkpoint for it."""
    from ..method.training import Trainer
    ckpt = latest_checkpoint(run_dir, trial_id)
    if ckpt is None:
        raise Missing(f"trial {trial_id} has no checkpoint in the run directory")
    trainer = Trainer.restore(ckpt, data=data, evaluator=evaluator)
    trainer.load_best()
    return trainer, ckpt


def _best_restorable(run: RunView, top: int):
    last = None
    for rank, (_, r) in enumerate(run.ranked.head(top).iterrows(), start=1):
        try:
            # the data set is asked for at each try: one that will not load reads like
            # a failed restore (a note), as in the single-file report
            trainer, _ = restore_best(run.path, r.trial_id, data=run.data())
            return rank, r, trainer
        except (Missing, KtgError) as e:
            last = e
    raise Missing(f"no checkpoint found for the top graphs ({last})")

"""Files people share, made for the safety tests: a run directory (without Ray: real
trainers, one epoch each, written in Tune's layout by the package's own results book),
graph files, checkpoints, and pickles that would run code when loaded."""
from __future__ import annotations

import json
import os
import pathlib
import struct
import zlib
from pathlib import Path

import torch

# `ktg train` / `compare` / `pretrain` flags that make training as small as it gets
TINY_TRAIN = ["--dataset", "digits", "--epochs", "1", "--batch-size", "32", "--d-width", "8",
              "--eval-samples", "10", "--no-fid", "--device", "cpu",
              "--max-iters-per-epoch", "1"]
TINY = dict(preset="quick", dataset="digits", image_size=16, batch_size=32, k=2,
            gates=["through", "cutoff"], num_trials=2, max_epochs=2, grace_period=1,
            reduction_factor=2, eval_samples=20, max_iters_per_epoch=1, fid=False,
            d_width=8, seed=3)
TRIALS = {"aaaa0001_00000": {"gate_D_0": "through", "gate_D_1": "through",
                             "gate_0_1": "cutoff", "gate_1_0": "through"},
          "aaaa0001_00001": {"gate_D_0": "through", "gate_D_1": "cutoff",
                             "gate_0_1": "through", "gate_1_0": "cutoff"}}


class Touch:
    """Unpickling this creates `path`: the file shows whether a load ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


class System:
    """Unpickling this runs a shell command that creates `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def poisoned_checkpoint(path: Path, marker: Path, shell: bool = False,
                        inner: dict | None = None) -> Path:
    """A torch checkpoint whose unpickling would create `marker` (via pathlib or a shell)."""
    payload = System(marker) if shell else Touch(marker)
    torch.save({**(inner or {}), "payload": payload}, path)
    return path


def make_run(root: Path, name: str = "run") -> Path:
    """A finished two-trial run directory: run.json, results.parquet, history.parquet and
    one `checkpoint_000000/trainer.pt` per trial, as a search writes them."""
    from ktg_search.data.loading import load_dataset
    from ktg_search.data.metrics import Evaluator
    from ktg_search.results.book import ResultsBook
    from ktg_search.search.config import SearchConfig
    from ktg_search.method.training import Trainer
    cfg = SearchConfig.from_dict(dict(TINY))
    run = root / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps(
        {"name": name, "config": cfg.to_dict(), "storage": f"sqlite:///{run / 'optuna.db'}",
         "study_name": name, "space_size": cfg.space.size(), "tune_path": str(run),
         "created": "2026-01-01T00:00:00"}, indent=2))
    data = load_dataset("digits", 16)
    ev = Evaluator(data, num_samples=cfg.train.eval_samples, fid=False)
    book = ResultsBook(run, cfg)
    space = cfg.space
    for tid, gates in TRIALS.items():
        params = {**gates, "model_0": "dcgan-small", "model_1": "dcgan-small",
                  "transfer": "feature_out"}
        trainer = Trainer(space.graph(params), cfg.train, data=data, evaluator=ev)
        row = trainer.run_epoch()
        book.on_result(tid, row)
        trainer.save(run / f"train_ktg_{tid}" / "checkpoint_000000" / "trainer.pt")
        book.on_complete(tid, params, last=row, error=None)
    book.write()
    return run


def png_header(path: Path, width: int, height: int) -> Path:
    """A small PNG file that claims `width` x `height` pixels (gray, 8 bit): its header
    is real, its pixel data is a few bytes. Opening it reads the size; decoding it would
    allocate width * height bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
                     chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` (links not followed) with its bytes: to show that nothing
    outside a tool's outputs changed."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            out[rel] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
    return out


def ktg(argv: list, capsys) -> tuple[int, str, str]:
    """`ktg_search.cli.main` on `argv`: (exit status, stdout, stderr)."""
    from ktg_search.cli import main
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(code: int, err: str, *names: str) -> None:
    """Exit 2 with one `error:` line naming every given name, and no traceback."""
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in names:
        assert str(n) in lines[0], (n, lines[0])


def assert_rows_kept(before, after) -> None:
    """Rows once written never change, as a results table shows them: a trained trial's
    epochs, status and objective stay; a duplicate stays a duplicate of the same original
    and shows that original's numbers (its row is a view on the original, which may have
    been training still when the duplicate's row was written)."""
    import math
    for _, r in before.iterrows():
        a = after[after.trial_id == r.trial_id]
        assert len(a) == 1, f"row {r.trial_id} lost or doubled"
        a = a.iloc[0]
        assert a.status == r.status, (r.trial_id, r.status, a.status)
        if r.status != "duplicate":
            assert a.epochs == r.epochs, (r.trial_id, r.epochs, a.epochs)
            assert (math.isnan(a.objective) and math.isnan(r.objective)) or \
                a.objective == r.objective, (r.trial_id, r.objective, a.objective)
            continue
        assert a.duplicate_of == r.duplicate_of and a.duplicate_of, r.trial_id
        orig = after[after.trial_id == a.duplicate_of]
        if len(orig):  # the original's row exists: the duplicate shows its numbers
            o = orig.iloc[0]
            assert a.epochs == o.epochs and a.best_epoch == o.best_epoch, \
                (r.trial_id, a.epochs, o.epochs)


def stray_checkpoints(trial_ids) -> list[Path]:
    """Epoch checkpoints of these trials left in the temp dir (each names its trial in
    trial.json): what a search must not leave behind, however its trials ended."""
    import tempfile
    ids = set(trial_ids)
    return [f for f in Path(tempfile.gettempdir()).glob("*/trial.json")
            if json.loads(f.read_text()).get("trial_id") in ids]

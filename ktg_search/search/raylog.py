"""Where Ray's own output goes: a log file in the run's directory, not the terminal.

A search, a comparison or a report prints a few lines a person reads; Ray prints start-up
banners, TensorBoard hints, experiment tables and its workers' log lines. Those are for
debugging: they go to a log file beside the results (`--verbose` shows them instead).
"""
from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def ray_output_to(log_file: Path, verbose: bool = False) -> Iterator[IO[str]]:
    """Inside, Ray's, Tune's and Optuna's own output (start-up lines, TensorBoard hints,
    experiment boxes, logging, warnings, forwarded worker lines) goes to `log_file`; the
    caller gets the real stdout for what a person should see. With `verbose`, nothing
    is redirected."""
    real = sys.stdout
    if verbose:
        yield real
        return
    import optuna
    ray_logger = logging.getLogger("ray")
    saved = list(ray_logger.handlers)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    from ..files.schemas import writable_inside
    writable_inside(log_file, log_file.parent, "search log")  # never through a link
    with open(log_file, "a", buffering=1) as log:
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                               "%(message)s"))
        for h in saved:
            ray_logger.removeHandler(h)
        ray_logger.addHandler(handler)
        # Optuna's handler holds the stderr of import time: switch it for ours
        optuna.logging.disable_default_handler()
        logging.getLogger("optuna").addHandler(handler)
        logging.captureWarnings(True)
        warn_logger = logging.getLogger("py.warnings")
        warn_logger.addHandler(handler)
        warn_logger.propagate = False
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield real
        finally:
            logging.getLogger("optuna").removeHandler(handler)
            optuna.logging.enable_default_handler()
            ray_logger.removeHandler(handler)
            for h in saved:
                ray_logger.addHandler(h)
            warn_logger.removeHandler(handler)
            warn_logger.propagate = True
            logging.captureWarnings(False)

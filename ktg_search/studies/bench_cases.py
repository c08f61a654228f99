"""`ktg bench`'s cases: which data set, image size and recipe each one times.

Kept apart from the benchmark (no torch import) so that the CLI can offer the names as
`--case` choices without loading torch at start-up.
"""
from __future__ import annotations

from typing import Any

# The embedded-scale recipe of issue 10 (every setting that changes the step): the
# standard-CNN SN discriminator, its learning rates and betas, paper_steps D weighting
# (the quick preset's), the generator EMA and the resolution-aware transfer weight. The
# reference implements each of them itself (see ReferenceTrainer), so a recipe case
# checks them all; the -uniform case is the digits preset's D weighting with them.
RECIPE: dict[str, Any] = {"discriminator": "sn-cnn", "d_width": 32, "lr_g": 1e-3,
                          "lr_d": 1e-3, "beta1": 0.0, "beta2": 0.9,
                          "d_loss_weighting": "paper_steps", "ema_decay": 0.9,
                          "ema_start": 2, "transfer_scale": "resolution"}
# case name -> (data set, image size, TrainConfig settings beside the paper's defaults)
CASES: dict[str, tuple[str, int, dict[str, Any]]] = {
    "digits-32": ("digits", 32, {}),
    "synthetic-32": ("synthetic", 32, {}),
    "synthetic-64": ("synthetic", 64, {}),
    "digits-32-recipe": ("digits", 32, RECIPE),
    "digits-32-recipe-uniform": ("digits", 32, {**RECIPE, "d_loss_weighting": "uniform"}),
    "digits-16": ("digits", 16, {}),  # tiny cases for tests; not in the default run
    "digits-16-recipe": ("digits", 16, RECIPE),
}
DEFAULT_CASES = ["digits-32", "synthetic-32", "synthetic-64", "digits-32-recipe",
                 "digits-32-recipe-uniform"]

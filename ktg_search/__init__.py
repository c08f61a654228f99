"""ktg-search: knowledge-transfer-graph search for multi-generator GANs on Ray Tune.

The names a user's script needs, imported on first use (so that `import ktg_search` and
the `ktg` command start without torch or Ray)::

    from ktg_search import load_results
    df = load_results("runs/my-search")   # the results table, one row per trial
"""
from __future__ import annotations

import importlib

# public name -> the module that defines it
_EXPORTS = {
    "load_results": "ktg_search.results.book",
    "load_history": "ktg_search.results.book",
    "Graph": "ktg_search.method.graph",
    "resolve_graph": "ktg_search.method.graph",
    "TrainConfig": "ktg_search.method.trainconfig",
    "SearchConfig": "ktg_search.search.config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ktg_search' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value

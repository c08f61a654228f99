"""The files: what ktg reads and writes, and how.

`safeload` reads shared files as data (checkpoints with `weights_only=True`, JSON and
tables checked field by field), `fileio` names the run directory's files and writes them
atomically, `outputs` makes output folders that never destroy what ktg did not make, and
`checks` holds the typed, bounded settings every config dataclass is built from.

May import: `ktg_search.errors` only. This is the bottom layer: everything else may use it.
"""

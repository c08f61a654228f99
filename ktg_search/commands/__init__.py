"""The commands of `ktg`, one module each: `add_parser(sub)` adds its subparser (with
`func` set to the module's `run(args) -> int`). A new command is one module here and one
line in `COMMANDS`."""
from __future__ import annotations

from . import (bench, compare, compress, export, gpucheck, graphs, presets, pretrain, query,
               report, search, status, train, validate)

# in the order `ktg --help` lists them
COMMANDS = (graphs, presets, validate, train, search, status, query, export, report,
            compare, compress, pretrain, bench, gpucheck)

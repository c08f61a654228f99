"""The one exception type for bad user input.

Everything a user can get wrong (a malformed graph file, an unknown gate, a missing data
set, a wrong flag value) raises `KtgError` with one message that names the bad value and
the valid ones. The CLI turns it into that message on stderr and exit status 2; library
callers catch it like any `ValueError`.
"""
from __future__ import annotations


class KtgError(ValueError):
    """Bad user input: the message names the bad value and the valid ones."""


def one_of(what: str, value: object, valid) -> KtgError:
    """The standard message for a value outside a fixed set."""
    valid = sorted(valid) if not isinstance(valid, (list, tuple)) else list(valid)
    return KtgError(f"unknown {what} {value!r}; valid: {', '.join(map(str, valid))}")

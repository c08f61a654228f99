"""The one exception type for bad user input.

Everything a user can get wrong (a malformed graph file, an unknown gate, a missing data
set, a wrong flag value) raises `KtgError` with one message that names the bad value and
the valid ones. The CLI turns it into that message on stderr and exit status 2; library
callers catch it like any `ValueError`.
"""
from __future__ import annotations

import re


class KtgError(ValueError):
    """Bad user input: the message names the bad value and the valid ones."""


def one_of(what: str, value: object, valid) -> KtgError:
    """The standard message for a value outside a fixed set."""
    valid = sorted(valid) if not isinstance(valid, (list, tuple)) else list(valid)
    return KtgError(f"unknown {what} {value!r}; valid: {', '.join(map(str, valid))}")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e"
                      r"\u2066-\u2069]")


def for_terminal(text: object) -> str:
    """`text` with every control character (ESC and the rest of C0 and C1, DEL, and the
    bidirectional overrides) written as a visible escape (`\\x1b`), so that a graph name
    or trial id from a shared file cannot move the cursor, recolour or rewrite the screen.
    Tabs and line breaks are kept: messages are made one line elsewhere (cli.py)."""
    text = str(text)
    return _CONTROL.sub(lambda m: (f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                   else f"\\u{ord(m.group()):04x}"), text)

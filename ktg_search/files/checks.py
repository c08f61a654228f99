"""Typed, bounded settings: one check per config field, declared beside the field.

Shared files (search configs, `run.json`, checkpoints, graph files) are data: every
field read from one is checked for its type and range before anything uses it, so that
`"k": "3"`, `nz=1e9` or `beta1=5` is one message naming the value and the valid range
(the project's rule) instead of a traceback deep in a trial, or a trial that asks for
20 GB. A dataclass field carries its check in its metadata::

    nz: int = setting(100, Int(1, 1024))

`check_fields(cls, mapping, where)` checks and converts a mapping (a parsed JSON object,
`--set` values) field by field; `check_instance(obj)` checks a built object. Conversions
are the lossless ones only: an int where a float is wanted, a float with an integral
value (`1e3`) where an int is wanted, one string where a list of names is wanted.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..errors import KtgError

MAX_TEXT = 4096  # paths, names, storage URLs


def _num(x: float) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return f"{x:g}" if isinstance(x, float) else str(x)


@dataclass(frozen=True)
class Check:
    """The type and range of one setting.

    kind: "int", "float", "bool", "text", "choice" (one of `choices`) or "names" (a
    non-empty list of distinct `choices`). `choices` may be a callable returning the
    valid names (a registry's), read when the check runs. `lo`/`hi` bound numbers
    (`lo_open`/`hi_open`: strict); `optional` allows null (None)."""
    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple | Callable[[], Iterable[str]] | None = None
    optional: bool = False
    max_len: int = MAX_TEXT

    def valid(self) -> list[str]:
        c = self.choices() if callable(self.choices) else self.choices
        return [str(v) for v in (c or ())]

    def rule(self, name: str) -> str:
        """The valid values in words, for messages and documentation."""
        if self.kind in ("int", "float"):
            what = "an integer" if self.kind == "int" else "a finite number"
            lo = "" if self.lo is None else f"{_num(self.lo)} {'<' if self.lo_open else '<='} "
            hi = "" if self.hi is None else f" {'<' if self.hi_open else '<='} {_num(self.hi)}"
            text = f"{what} with {lo}{name}{hi}" if (lo or hi) else what
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "choice":
            text = "one of " + ", ".join(self.valid())
        elif self.kind == "names":
            text = "a non-empty list of distinct names from: " + ", ".join(self.valid())
        elif self.kind == "device":
            text = "one of " + DEVICE_RULE
        elif self.kind == "floats":
            lo = "" if self.lo is None else f" {'>' if self.lo_open else '>='} {_num(self.lo)}"
            hi = "" if self.hi is None else f" {'<' if self.hi_open else '<='} {_num(self.hi)}"
            text = (f"a list of at most {self.max_len} distinct finite numbers, each"
                    f"{lo}{' and' if lo and hi else ''}{hi}")
        elif self.kind == "ints":
            text = (f"a non-empty list of at most {self.max_len} distinct integers from "
                    f"{_num(self.lo)} to {_num(self.hi)}")
        elif self.kind == "bools":
            text = "[false], [true] or [false, true]"
        elif self.kind == "switch_names":
            text = ("true, false, or a non-empty list of distinct names from: " +
                    ", ".join(self.valid()))
        else:
            text = f"a string of 1 to {self.max_len} characters"
        return text + (", or null" if self.optional else "")

    def __call__(self, name: str, value: Any, where: str = "") -> Any:
        """`value` converted to the field's type; KtgError naming it and the rule."""
        if value is None and self.optional:
            return None

        def bad() -> KtgError:
            shown = repr(value)
            if len(shown) > 80:
                shown = shown[:77] + "..."
            return KtgError(f"{where + ': ' if where else ''}The value of `{name}` is "
                            f"{shown}, but must be {self.rule(name)}")
        v = value
        if self.kind == "int":
            if isinstance(v, float) and math.isfinite(v) and v.is_integer():
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad()
        elif self.kind == "float":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise bad()
            try:
                v = float(v)
            except OverflowError:  # an int too large for a float
                raise bad() from None
            if not math.isfinite(v):
                raise bad()
        elif self.kind == "bool":
            if not isinstance(v, bool):
                raise bad()
            return v
        elif self.kind == "choice":
            valid = list(self.choices() if callable(self.choices) else self.choices or ())
            if isinstance(v, float) and v.is_integer() and all(
                    isinstance(c, int) for c in valid):
                v = int(v)  # 32.0 where the choices are sizes
            if isinstance(v, bool) or not any(type(v) is type(c) and v == c for c in valid):
                raise bad()
            return v
        elif self.kind == "text":
            if not isinstance(v, str) or not v or len(v) > self.max_len or not _encodable(v):
                raise bad()
            return v
        elif self.kind == "device":
            if not _is_device(v):
                raise bad()
            return v
        elif self.kind == "names":
            if isinstance(v, str):
                v = [v]
            if isinstance(v, tuple):
                v = list(v)
            valid = self.valid()
            if not isinstance(v, list) or not v or len(v) > 64 or \
                    any(not isinstance(x, str) or x not in valid for x in v) or \
                    len(set(v)) != len(v):
                raise bad()
            return v
        elif self.kind == "floats":
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                v = [v]
            if isinstance(v, tuple):
                v = list(v)
            one = Check("float", self.lo, self.hi, self.lo_open, self.hi_open)
            if not isinstance(v, list) or len(v) > self.max_len:
                raise bad()
            try:
                v = [one(name, x) for x in v]
            except KtgError:
                raise bad() from None
            if len(set(v)) != len(v):
                raise bad()
            return v
        elif self.kind == "ints":
            v = [v] if isinstance(v, (int, float)) and not isinstance(v, bool) else v
            v = list(v) if isinstance(v, tuple) else v
            if not isinstance(v, list) or not v or len(v) > self.max_len or any(
                    isinstance(x, bool) or not isinstance(x, (int, float)) or
                    not float(x).is_integer() or not self.lo <= x <= self.hi for x in v) \
                    or len(set(v)) != len(v):
                raise bad()
            return [int(x) for x in v]
        elif self.kind == "switch_names":
            if isinstance(v, bool):
                return v
            if not isinstance(v, (list, tuple, str)):
                raise bad()
            return self._names(v, bad)
        elif self.kind == "bools":
            v = [v] if isinstance(v, bool) else list(v) if isinstance(v, tuple) else v
            if not isinstance(v, list) or not v or len(v) > 2 or \
                    any(not isinstance(x, bool) for x in v) or len(set(v)) != len(v):
                raise bad()
            return v
        else:  # a programming error, not user input
            raise ValueError(f"unknown check kind {self.kind!r}")
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            raise bad()
        if self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)):
            raise bad()
        return v


    def _names(self, v: Any, bad: Callable[[], KtgError]) -> list[str]:
        """A switch_names value that is not a bool: a name or a list of names."""
        v = [v] if isinstance(v, str) else list(v)
        valid = self.valid()
        if not v or len(v) > 64 or any(not isinstance(x, str) or x not in valid
                                       for x in v) or len(set(v)) != len(v):
            raise bad()
        return v


def _encodable(s: str) -> bool:
    """False for text holding lone surrogates or NUL: it cannot be a file name, and
    printing or saving it would fail later with a UnicodeEncodeError."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in s


# ---- constructors used beside the fields ---------------------------------------------------
def Int(lo: int | None = None, hi: int | None = None, optional: bool = False) -> Check:
    return Check("int", lo, hi, optional=optional)


def Float(lo: float | None = None, hi: float | None = None, lo_open: bool = False,
          hi_open: bool = False, optional: bool = False) -> Check:
    return Check("float", lo, hi, lo_open=lo_open, hi_open=hi_open, optional=optional)


def Floats(lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False, max_len: int = 64) -> Check:
    """A list of distinct numbers in a range (empty allowed)."""
    return Check("floats", lo, hi, lo_open=lo_open, hi_open=hi_open, max_len=max_len)


def Ints(lo: int, hi: int, max_len: int = 64) -> Check:
    """A non-empty list of distinct integers in [lo, hi]."""
    return Check("ints", lo, hi, max_len=max_len)


def Bools() -> Check:
    """[false], [true] or [false, true]: which values of a switch a search tries."""
    return Check("bools")


def Bool() -> Check:
    return Check("bool")


def Text(optional: bool = False, max_len: int = MAX_TEXT) -> Check:
    return Check("text", optional=optional, max_len=max_len)


def Choice(choices: tuple | Callable[[], Iterable[str]], optional: bool = False) -> Check:
    return Check("choice", choices=choices, optional=optional)


def Names(choices: tuple | Callable[[], Iterable[str]]) -> Check:
    return Check("names", choices=choices)


def SwitchOrNames(choices: tuple | Callable[[], Iterable[str]]) -> Check:
    """true (the defaults), false (none) or a non-empty list of distinct names."""
    return Check("switch_names", choices=choices)


def setting(default: Any, check: Check, factory: Callable[[], Any] | None = None,
            help: str | None = None):
    """A dataclass field whose metadata carries its check and, optionally, its help
    text: the command-line flags built from a config (commands/common.py) read both, so
    that a default, its range and its meaning are written once, beside the field."""
    meta = {"check": check} if help is None else {"check": check, "help": help}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_checks(cls) -> dict[str, Check]:
    """{field name: Check} of a dataclass, for the fields that declare one."""
    return {f.name: f.metadata["check"] for f in dataclasses.fields(cls)
            if "check" in f.metadata}


def check_fields(cls, values: Any, where: str, what: str = "setting") -> dict[str, Any]:
    """A mapping for `cls(**...)`: a JSON object whose keys are fields of `cls`, each
    value checked and converted by the field's check. Unknown keys are refused."""
    if not isinstance(values, dict):
        raise KtgError(f"{where}: must be a JSON object of settings, got "
                       f"{type(values).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        shown = repr(unknown[0]) if isinstance(unknown[0], str) else f"{unknown[0]!r}"
        raise KtgError(f"{where}: unknown {what} {shown[:80]}; valid: "
                       f"{', '.join(sorted(names))}")
    checks = field_checks(cls)
    return {k: checks[k](k, v, where) if k in checks else v for k, v in values.items()}


def check_instance(obj: Any, where: str = "") -> None:
    """Check every field of a dataclass instance that declares a check."""
    for name, check in field_checks(type(obj)).items():
        setattr(obj, name, check(name, getattr(obj, name), where))


# ---- devices --------------------------------------------------------------------------------
DEVICE_RULE = "auto, cpu, cuda, cuda:N (N = 0..63)"


def _is_device(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    n = value[5:] if value.startswith("cuda:") else None
    return value in ("auto", "cpu", "cuda") or (
        n is not None and n.isascii() and n.isdigit() and len(n) <= 2 and int(n) < 64)


def Device() -> Check:
    """auto | cpu | cuda | cuda:N: the devices a trainer resolves."""
    return Check("device")

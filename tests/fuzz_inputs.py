"""Malformed inputs for the fuzz test, made systematically rather than listed by hand.

- field values: for every field of SearchConfig and of its sections (`train.nz`,
  `space.k`), values outside its declared check
  (wrong JSON types, out-of-range numbers, unknown names, broken text), derived from the
  check itself, so a new field is fuzzed without new code here;
- graph files: every key of a valid graph given wrong types and values, edges and nodes
  broken one way at a time, and unknown or missing keys;
- text: truncations of valid files at many points, random bytes, non-UTF-8, deep
  nesting, numbers of thousands of digits, empty files;
- tables: truncated, random, empty and wrongly shaped Parquet files.
"""
from __future__ import annotations

import io
import json
import random
from dataclasses import fields, is_dataclass

SURROGATE = "\ud800"
JUNK = [None, True, 0, -1, 2.5, "", "x", [], {}, [1], {"a": 1}]


def bad_values(check) -> list:
    """Values that `check` (checks.Check) must refuse."""
    k = check.kind
    none = [] if check.optional else [None]
    if k == "int":
        vals = [2.5, "3", True, [], {}] + none
        vals += [check.lo - 1] if check.lo is not None else []
        vals += [check.hi + 1, check.hi * 10 ** 6] if check.hi is not None else []
    elif k == "float":
        vals = ["x", "1", True, [1.0], float("nan"), float("inf")] + none
        if check.lo is not None:
            vals.append(check.lo if check.lo_open else check.lo - 1)
        if check.hi is not None:
            vals.append(check.hi if check.hi_open else check.hi * 2 + 1)
    elif k == "bool":
        vals = [0, 1, "true", [], "yes"] + none
    elif k == "choice":
        vals = ["no-such-thing", 5, [], True, SURROGATE] + none
    elif k == "names":
        valid = check.valid()
        vals = [[], ["no-such-thing"], "no-such-thing", [1], None, {}, [valid[0], valid[0]]]
    elif k == "floats":
        vals = ["x", [1.0, 1.0], [float("nan")], [True], [[1.0]], {}, [1.0] * (check.max_len + 1)]
        if check.lo is not None:
            vals.append([check.lo if check.lo_open else check.lo - 1])
    elif k == "ints":
        vals = ["x", [2.5], [True], [[1]], {}, [check.lo, check.lo], [check.lo - 1],
                [check.hi + 1], [check.lo] * (check.max_len + 1)]
    elif k == "bools":
        vals = ["x", [0], ["true"], [[True]], {}, [True, True]]
    elif k == "switch_names":   # true, false or a list of names
        valid = check.valid()
        vals = [[], ["no-such-thing"], "no-such-thing", [1], 5, None, {}, "true ",
                [valid[0], valid[0]]]
    elif k == "device":
        vals = ["tpu", "cuda:99", "cuda:x", "", 5, "cpu "] + none
    else:  # text
        vals = ["", 5, [], True, SURROGATE, "a\x00b", "a" * (check.max_len + 1)] + none
    return vals


def config_mutations(cls, prefix: str = "") -> list[tuple[str, str, object]]:
    """(id, key, bad value) for every checked field of a config dataclass; a field that
    is a section (a dataclass of its own: SearchConfig's `train`, `space`) gives its
    fields' mutations under `section.field` keys."""
    out = []
    for f in fields(cls):
        if is_dataclass(f.default_factory):
            out += config_mutations(f.default_factory, f"{prefix}{f.name}.")
            continue
        check = f.metadata.get("check")
        for i, v in enumerate(bad_values(check) if check else []):
            out.append((f"{prefix}{f.name}-{i}", prefix + f.name, v))
    return out


def with_setting(config: dict, key: str, value: object) -> dict:
    """A copy of a nested config object with `key` (`num_trials`, `train.nz`) set."""
    section, dot, name = key.rpartition(".")
    if not dot:
        return {**config, key: value}
    return {**config, section: {**config[section], name: value}}


def truncations(text: bytes, n: int = 12) -> list[bytes]:
    """`n` prefixes of `text` (none of them whole), spread over its length."""
    cuts = sorted({0, 1, len(text) - 1, *(len(text) * i // n for i in range(1, n))})
    return [text[:c] for c in cuts if c < len(text)]


def junk_bytes(seed: int, n: int = 6) -> list[bytes]:
    """Random byte strings, and some that are almost JSON."""
    rng = random.Random(seed)
    out = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))) for _ in range(n)]
    out += [b"\xff\xfe{}", b"{" * 3, b"[" * 100_000 + b"]" * 100_000,
            b'{"a": ' + b"9" * 5000 + b"}", b"", b"null", b"\x00" * 64]
    return out


GRAPH = {"name": "g", "nodes": [{"model": "dcgan-small"}, {"model": "dcgan-small"}],
         "edges": [{"src": "D", "dst": 0, "gate": "through"},
                   {"src": 1, "dst": 0, "gate": "linear_up"}],
         "transfer": "image", "alpha": 1000}


def graph_mutations() -> list[tuple[str, object]]:
    """(id, parsed graph) that Graph.from_dict must refuse."""
    base = json.loads(json.dumps(GRAPH))
    out: list[tuple[str, object]] = [("top-list", [base]), ("top-str", "g"),
                                     ("top-null", None), ("unknown-key", {**base, "x": 1}),
                                     ("no-nodes", {k: v for k, v in base.items()
                                                   if k != "nodes"}),
                                     ("9-nodes", {**base, "nodes": base["nodes"] * 5})]
    wrong = {"nodes": JUNK, "edges": [None, True, 5, "x", {}, {"a": 1}],
             "transfer": [None, 5, "x", [], "images", SURROGATE],
             "alpha": [None, True, 0, -1, "x", [], 1e10, 10 ** 400],
             "discriminator": [None, 5, "x", [], "SN"],
             "target": [True, -1, 2, 5, "0", [], 0.5],
             "name": [5, [], True, SURROGATE, "a\x00", "n" * 201],
             "description": [5, [], SURROGATE, "d" * 10_001]}
    for key, values in wrong.items():
        for i, v in enumerate(values):
            out.append((f"{key}-{i}", {**base, key: v}))
    node_bad = [{"model": "no-such"}, {"model": None}, {"model": 5}, {}, {"model":
                "dcgan-small", "x": 1}, {"model": "dcgan-small", "pretrained": ""},
                {"model": "dcgan-small", "pretrained": 5},
                {"model": "dcgan-small", "pretrained": SURROGATE},
                {"model": "dcgan-small", "pretrained": "p" * 5000}, "dcgan-small", 5, None]
    for i, n in enumerate(node_bad):
        out.append((f"node-{i}", {**base, "nodes": [base["nodes"][0], n]}))
    edge_bad = [{"src": 5, "dst": 0, "gate": "through"}, {"src": -1, "dst": 0, "gate": "x"},
                {"src": "E", "dst": 0, "gate": "through"},
                {"src": True, "dst": 0, "gate": "through"},
                {"src": 0, "dst": 0, "gate": "through"}, {"src": "D", "dst": 2,
                                                          "gate": "through"},
                {"src": "D", "dst": "0", "gate": "through"},
                {"src": "D", "dst": 0.0, "gate": "through"},
                {"src": "D", "dst": 1, "gate": "no-such"}, {"src": "D", "dst": 1},
                {"src": "D", "dst": 1, "gate": "through", "w": 1},
                {"src": "D", "dst": 0, "gate": "cutoff"}, [1, 0, "through"], None,
                {"src": [0], "dst": 1, "gate": "through"},
                {"src": "D", "dst": 1, "gate": ["through"]}]
    for i, e in enumerate(edge_bad):
        out.append((f"edge-{i}", {**base, "edges": base["edges"] + [e]}))
    return out


def parquet_bytes(df) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def table_mutations(good: bytes, df, required: dict[str, str]) -> list[tuple[str, bytes]]:
    """(id, file bytes) of tables that a reader must refuse: truncations, junk, and
    frames that lack a required column or hold the wrong kind of values in one."""
    out = [(f"cut-{len(t)}", t) for t in truncations(good, 10)]
    out += [(f"junk-{i}", b) for i, b in enumerate(junk_bytes(7, 4))]
    out.append(("csv", df.to_csv(index=False).encode()))
    for col, kind in required.items():
        out.append((f"no-{col}", parquet_bytes(df.drop(columns=[col]))))
        wrong = df.copy()
        wrong[col] = ["text"] * len(df) if kind == "num" else list(range(len(df)))
        out.append((f"wrong-{col}", parquet_bytes(wrong)))
    return out

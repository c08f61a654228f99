"""The README and docs/ cannot drift from the code.

- Every `ktg ...` command line shown in README.md (its bash and untagged code blocks, and
  the `$ ktg ...` lines of its text blocks) and in the `bash` blocks of docs/*.md is parsed
  by the real parser (`ktg_search.cli.build_parser`), so an unknown flag or a bad choice
  fails; a built-in graph or preset it names must exist, its `--dataset` must be a data set,
  and its `--set` keys and values must be accepted by `SearchConfig.with_overrides`.
- `make X` lines name Makefile targets; the JSON examples (graph files, search configs)
  load; the README's Python examples run, on a small real run directory; relative links
  resolve, and every document in docs/ is linked from the README.
- The README is at most 300 lines.
Nothing here trains: the commands are parsed, never run. The checks' teeth are shown on
made-up bad lines.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 300
FENCE = re.compile(r"^```(\S*)\s*$")


# ---- reading the documents ---------------------------------------------------------------
def code_blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, body, line number of the opening fence) of every fenced code block."""
    blocks, lang, body, start = [], None, [], 0
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line.strip()) if line.lstrip().startswith("```") else None
        if lang is None and m:
            lang, body, start = m.group(1).lower(), [], n
        elif lang is not None and line.strip() == "```":
            blocks.append((lang, "\n".join(body), start))
            lang = None
        elif lang is not None:
            body.append(line)
    assert lang is None, f"a code block opened at line {start} is never closed"
    return blocks


def logical_lines(body: str) -> list[str]:
    """Lines with backslash continuations joined."""
    out, cur = [], ""
    for line in body.splitlines():
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
        else:
            out.append(cur + line)
            cur = ""
    if cur:
        out.append(cur)
    return out


def _is_ktg(token: str) -> bool:
    return token == "ktg" or token.endswith("/ktg")


def ktg_commands(line: str) -> list[list[str]]:
    """The argv (after `ktg`) of every ktg command in one shell line: `# comments` dropped,
    split at `;`, `&&`, `|`, `>`, leading `VAR=value` assignments skipped, a path before
    `ktg` (`.venv/bin/ktg`) allowed, and `ktg` found after a wrapper (`ray job submit ...
    -- ktg search ...`)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    tokens = list(lex)
    segments, cur = [], []
    for t in tokens:
        if t and all(c in "();<>|&" for c in t):
            segments.append(cur)
            cur = []
        else:
            cur.append(t)
    segments.append(cur)
    out = []
    for seg in segments:
        for i, t in enumerate(seg):
            after_wrapper = i > 0 and seg[i - 1] in ("--", "do", "then", "else")
            if _is_ktg(t) and (after_wrapper or all("=" in s for s in seg[:i])):
                out.append(seg[i + 1:])
                break
    return out


def commands_in(path: Path) -> list[tuple[str, list[str]]]:
    """(where, argv) of every ktg command a document shows: README.md in its bash and
    untagged blocks and its text blocks' `$ ` lines; docs/*.md in its bash blocks."""
    text = path.read_text()
    found = []
    for lang, body, start in code_blocks(text):
        in_readme = path == README
        if lang in ("bash", "sh", "shell") or (in_readme and lang == ""):
            lines = logical_lines(body)
        elif in_readme and lang in ("text", "console"):
            lines = [ln for ln in logical_lines(body) if ln.strip().startswith("$ ")]
        else:
            continue
        for line in lines:
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            for argv in ktg_commands(line):
                found.append((f"{path.name}, block at line {start}: {line}", argv))
    return found


# ---- the checker -------------------------------------------------------------------------
def _placeholder(value: str) -> bool:
    """A shell variable in a value (`graph-alpha$a.json`): not a literal to check."""
    return "$" in value


def strict_parser() -> argparse.ArgumentParser:
    """`ktg`'s parser with abbreviations off: a document spells every flag in full (an
    abbreviation parses today and breaks when a flag with the same start is added)."""
    from ktg_search.cli import build_parser
    parser = build_parser()
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.allow_abbrev = False
    return parser


def check_command(argv: list[str]) -> None:
    """Parse `ktg ARGV` with the real parser, then check the names it holds; AssertionError
    naming what is wrong."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = strict_parser().parse_args(argv)
    except SystemExit as e:
        raise AssertionError(f"`ktg {' '.join(argv)}` does not parse (exit {e.code}): "
                             f"{err.getvalue().strip()}") from None
    from ktg_search.errors import KtgError
    from ktg_search.method.graph import builtin_graphs
    from ktg_search.search.config import load_preset, presets, resolve_key
    graphs = getattr(args, "graphs", None) or \
        ([args.graph] if hasattr(args, "graph") else [])
    for g in graphs:  # a name that is not a file path must be a built-in graph
        if not g.endswith(".json") and "/" not in g and not _placeholder(g):
            known = builtin_graphs()
            assert g in known, (f"`ktg {' '.join(argv)}`: {g!r} is not a built-in graph "
                                f"({', '.join(known)})")
    preset = getattr(args, "preset", None)
    if preset is not None:
        assert preset in presets(), (f"`ktg {' '.join(argv)}`: unknown preset {preset!r} "
                                     f"({', '.join(presets())})")
    dataset = getattr(args, "dataset", None)
    if dataset is not None and not _placeholder(dataset):
        from ktg_search.data.loading import check_dataset_name
        try:
            check_dataset_name(dataset)
        except KtgError as e:
            raise AssertionError(f"`ktg {' '.join(argv)}`: {e}") from None
    sets = getattr(args, "set", None) or []
    if sets:
        try:
            for item in sets:
                resolve_key(item.split("=", 1)[0], "--set")
            load_preset(preset or "quick").with_overrides(sets)
        except KtgError as e:
            raise AssertionError(f"`ktg {' '.join(argv)}`: {e}") from None


def all_commands() -> list[tuple[str, list[str]]]:
    return [c for path in [README, *DOCS] for c in commands_in(path)]


def _command_params() -> list:
    return [pytest.param(where, argv,
                         id=f"{where.split(',')[0]}-{n}-{argv[0] if argv else ''}")
            for n, (where, argv) in enumerate(all_commands())]


# ---- the documents' commands -------------------------------------------------------------
def test_the_documents_show_commands_of_every_kind():
    """The checks below look at something: the README shows each job's command."""
    shown = {argv[0] for _, argv in commands_in(README) if argv}
    for command in ("search", "status", "query", "export", "report", "train", "compare",
                    "validate", "graphs", "presets"):
        assert command in shown, f"the README shows no `ktg {command}` command"
    assert len(all_commands()) >= 40


@pytest.mark.parametrize("where,argv", _command_params())
def test_every_command_shown_parses_and_names_what_exists(where, argv):
    try:
        check_command(argv)
    except AssertionError as e:
        raise AssertionError(f"{where}\n{e}") from None


@pytest.mark.parametrize("argv,why", [
    (["search", "--preset", "quick", "--max-epocs", "4"], "does not parse"),   # a typo
    (["search", "--preset", "quick", "--max-epoch", "4"], "does not parse"),   # abbreviated
    (["search", "--trials", "40"], "does not parse"),                          # no flag
    (["train", "mad-gan-4", "--seeds", "3"], "not a built-in graph"),
    (["compare", "dcgan", "madgan-3", "--seeds", "5"], "not a built-in graph"),
    (["search", "--preset", "quik"], "unknown preset"),
    (["train", "best.json", "--preset", "cifar"], "unknown preset"),
    (["search", "--set", "train.lr=1e-3"], "unknown setting 'train.lr'"),
    (["search", "--set", "space.k=9"], "value of `k` is 9"),                   # too big
    (["train", "best.json", "--dataset", "mnits"], "unknown data set"),
    (["compare", "dcgan", "--d-loss-weighting", "paper"], "does not parse"),   # bad choice
    (["report", "runs/x", "--only", "rankings"], "does not parse"),
])
def test_the_checker_rejects_bad_command_lines(argv, why):
    """Teeth: made-up bad lines fail, each for its reason."""
    with pytest.raises(AssertionError, match=why):
        check_command(argv)


def test_command_extraction_handles_continuations_comments_and_wrappers():
    body = ("ktg search --preset digits \\\n    --num-trials 200  # a comment --bogus\n"
            "RAY_AUTH_MODE=disabled .venv/bin/ktg graphs && ray up cluster.yaml\n"
            "ray job submit --address http://HEAD:8265 -- ktg status runs/x\n"
            "for a in 1 2; do ktg presets; done\n"
            "sed 's/ktg/x/' f > g\n")
    found = [argv for line in logical_lines(body) for argv in ktg_commands(line)]
    assert found == [["search", "--preset", "digits", "--num-trials", "200"], ["graphs"],
                     ["status", "runs/x"], ["presets"]]
    # and a bad flag hidden behind a continuation is still seen
    bad = [argv for line in logical_lines("ktg search \\\n  --bogus 1\n")
           for argv in ktg_commands(line)]
    with pytest.raises(AssertionError, match="does not parse"):
        check_command(bad[0])


def test_make_lines_name_makefile_targets():
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    shown = [line.split()[1] for lang, body, _ in code_blocks(README.read_text())
             for line in body.splitlines() if line.startswith("make ")]
    assert {"demo", "test"} <= set(shown)
    for t in shown:
        assert t in targets, f"README shows `make {t}`, the Makefile has {sorted(targets)}"


# ---- JSON examples -----------------------------------------------------------------------
def json_examples() -> list[tuple[str, object]]:
    out = []
    for path in [README, *DOCS]:
        for lang, body, start in code_blocks(path.read_text()):
            if lang == "json":
                out.append((f"{path.name}:{start}", json.loads(body)))
    return out


@pytest.mark.parametrize("where,spec", json_examples())
def test_json_examples_load(where, spec, tmp_path):
    """A graph file example is a valid graph (and recipe); a search config example reads
    as a config file over its preset."""
    if "nodes" in spec:
        from ktg_search.method.graph import Graph
        from ktg_search.method.trainconfig import check_recipe
        g = Graph.from_dict(spec, where=where)
        assert g.k == len(spec["nodes"])
        if "recipe" in spec:
            check_recipe(spec["recipe"], where=where)
    else:
        from ktg_search.search.config import load_config_file
        f = tmp_path / "config.json"
        f.write_text(json.dumps(spec))
        cfg = load_config_file(str(f))
        for section in ("train", "space"):
            for key, value in spec.get(section, {}).items():
                got = getattr(getattr(cfg, section), key)
                assert (list(got) if isinstance(got, tuple) else got) == value, (where, key)


def test_json_examples_exist():
    kinds = {"graph" if "nodes" in s else "config" for _, s in json_examples()}
    assert kinds == {"graph", "config"}


# ---- the README's Python examples --------------------------------------------------------
def python_examples() -> list[str]:
    return [body for lang, body, _ in code_blocks(README.read_text()) if lang == "python"]


def test_python_examples_run_on_a_real_run_directory(shared_run, tmp_path, monkeypatch,
                                                     capsys):
    """The examples, in order, in one namespace, in a folder whose runs/my-search is a
    small finished run (two trials, real trainers: conftest's shared_run)."""
    examples = python_examples()
    assert examples, "the README shows no Python example"
    shutil.copytree(shared_run, tmp_path / "runs" / "my-search", symlinks=True)
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    for code in examples:
        exec(compile(code, "README.md", "exec"), names)
    df = names.get("df")
    assert df is not None and len(df) == 2 and "objective" in df.columns
    assert "trial_id" in capsys.readouterr().out


def test_where_filters_shown_run_on_a_real_results_table(shared_run):
    """Every `ktg query --where` shown is valid in the filter language, over a real table's
    columns (`--where` is checked when it runs, not by the parser)."""
    from ktg_search import load_results
    from ktg_search.results.where import filter_rows
    df = load_results(shared_run)
    wheres = []
    for _, argv in all_commands():
        if argv and argv[0] == "query":
            args = strict_parser().parse_args(argv)
            if args.where:
                wheres.append(args.where)
    assert wheres, "no `ktg query --where` shown"
    for expr in wheres:
        filter_rows(df, expr)  # KtgError on an unknown column or a refused expression


def test_rank_study_script_runs(shared_run):
    """docs/rank_study.py, which docs/early-stops.md runs on a search, runs."""
    script = ROOT / "docs" / "rank_study.py"
    p = subprocess.run([sys.executable, str(script), str(shared_run)], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("best: epoch 1:"), p.stdout


# ---- links and length --------------------------------------------------------------------
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_relative_links_resolve():
    for path in [README, *DOCS]:
        for target in LINK.findall(path.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            assert (path.parent / target).exists(), f"{path.name} links to missing {target}"


def test_every_document_is_linked_from_the_readme():
    linked = {(README.parent / t).resolve() for t in LINK.findall(README.read_text())}
    for doc in DOCS:
        assert doc.resolve() in linked, f"README.md does not link docs/{doc.name}"


def test_readme_is_a_manual_of_at_most_300_lines():
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES})"

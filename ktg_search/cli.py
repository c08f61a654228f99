"""`ktg`: the command line. One subcommand per user job; bad input exits with status 2.

    ktg train GRAPH --dataset D      train a graph file or built-in graph, several seeds
    ktg validate GRAPH [--no-files]  explain what is wrong with a graph file
    ktg graphs | presets             what ships with the package
    ktg search [--preset P]          the knowledge-transfer-graph search (Ray Tune)
    ktg status RUN [--watch]         a running or finished search, from its files
    ktg query RUN / ktg export RUN   read the results table, export a trial's graph
    ktg report RUN                   the ranked graph report (HTML + Markdown)
    ktg compare GRAPH... / pretrain  the papers' comparison tables; KD teachers
    ktg compress --teacher T.pt      the KD paper's compression study (students by width)
    ktg bench                        engine speed against the literal reference
    ktg gpu-check                    check a GPU machine end to end (make gpu-check)

Commands that write files take `-o/--out` and refuse an existing output without `--force`;
files from elsewhere (graphs, configs, run directories, checkpoints) are read as data
(safeload.py, checks.py), and bad input is one `ktg CMD: error: ...` line with status 2.
"""
from __future__ import annotations

import argparse
import sys

from .errors import KtgError


def _one_line(text: str) -> str:
    """A message as one line, safe for a terminal: a value quoted in it (from a file
    someone else made) may hold line breaks or escape sequences."""
    from .errors import for_terminal
    text = for_terminal(text)
    return " ".join(text.split("\n")) if "\n" in text else text


def build_parser() -> argparse.ArgumentParser:
    from .commands import COMMANDS
    p = argparse.ArgumentParser(prog="ktg", description="Search knowledge-transfer graphs "
                                "for multi-generator GAN training on Ray Tune.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KtgError as e:
        print(f"ktg {args.command}: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that cannot be read or written: permissions, disk full
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(_one_line(f"ktg {args.command}: error: {e.strerror or e}{where}"),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ktg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

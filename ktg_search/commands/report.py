"""`ktg report RUN`: the ranked graph report (HTML + Markdown) of a search."""
from __future__ import annotations


def add_parser(sub) -> None:
    from ..report import add_report_parser
    add_report_parser(sub)

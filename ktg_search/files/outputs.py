"""Where commands write: outputs that never destroy what ktg did not make.

Three kinds of output, three rules:

- an output *file* (`export -o`, `pretrain -o`): a directory is refused; an existing file
  is replaced only with `--force` (`output_file`);
- an output *folder* that files are written into (`train --out`, `compare --out`): a file
  is refused; an existing folder that is not empty is written into only with `--force`,
  and nothing already in it is deleted (`output_folder`);
- a folder that is *replaced whole* (the report): replaced only when it carries the
  report's marker file, i.e. ktg made it; never the current directory, the run or any
  folder holding either; never through a symbolic link, and no link inside the run is
  followed (`report_folder`, `swap_in`). A shared run directory may hold a link
  `report -> ../victim/docs`: replacing "the report" must not mean deleting the docs.

Files and folders get the user's umask (results.atomic_write), so colleagues on a shared
file system can read them.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..errors import KtgError

REPORT_MARKER = ".ktg-report"   # in every report folder ktg writes; JSON: what and when
# what `ktg report` wrote before it had a marker: a default RUN/report holding only these
# is still recognised as a report (and nothing else is)
_LEGACY_REPORT_FILES = ("report.html", "report.md")


def _lexical(path: str | Path) -> Path:
    """An absolute path with `.`/`..` removed by text, without following any link: what
    the checks look at is then exactly what is touched."""
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def _within(p: Path, root: Path) -> bool:
    return p == root or root in p.parents


# ---- files and folders written into ---------------------------------------------------------
def _check_parent_is_a_folder(p: Path, flag: str) -> None:
    """KtgError when the nearest existing ancestor of `p` is a file (nothing can be made
    below it)."""
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise KtgError(f"{flag} {str(p)!r}: {str(parent)!r} is a file, not a "
                               f"folder")
            break


def output_file(path: str | Path, force: bool, flag: str = "-o/--out",
                example: str = "best.json") -> Path:
    """An output file path: KtgError for a directory, or an existing file without
    `force` (nothing is written then). The parent folder is made when missing."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise KtgError(f"{flag} {str(p)!r} is a directory; valid: a file path, e.g. "
                       f"{example}")
    _check_parent_is_a_folder(p, flag)
    if (p.exists() or p.is_symlink()) and not force:
        raise KtgError(f"{flag} {str(p)!r} already exists; pass --force to replace it, or "
                       f"choose another path")
    return p


def output_folder(path: str | Path, force: bool, flag: str = "-o/--out") -> tuple[Path, bool]:
    """An output folder: (path, existed). KtgError for a file, or for an existing folder
    that is not empty without `force`. With `force` files are written into it; nothing
    in it is deleted."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise KtgError(f"{flag} {str(p)!r} is a file; valid: a new or empty folder (or an "
                       f"existing one with --force)")
    _check_parent_is_a_folder(p, flag)
    existed = p.is_dir()
    if existed and any(p.iterdir()) and not force:
        raise KtgError(f"{flag} {str(p)!r} already holds files; pass --force to write "
                       f"into it (files of the same name are replaced), or choose another "
                       f"folder")
    return p, existed


def add_out_args(sp, help: str, default: str | None = None, required: bool = False,
                 force: bool = True) -> None:
    """`-o/--out` (and the older `--output` spelling) for every command that writes files,
    with `--force` to replace existing outputs."""
    sp.add_argument("-o", "--out", "--output", dest="out", default=default,
                    required=required, metavar="PATH", help=help)
    if force:
        sp.add_argument("--force", action="store_true",
                        help="replace existing outputs (default: refuse)")


# ---- folders replaced whole (the report) -------------------------------------------------------
def is_report_folder(folder: Path, legacy: bool = False) -> bool:
    """True when `folder` carries the report marker (ktg made it). With `legacy`, also a
    folder that holds report.html and otherwise only report.md and PNG files, as
    `ktg report` wrote them before the marker existed."""
    if (folder / REPORT_MARKER).is_file() and not (folder / REPORT_MARKER).is_symlink():
        return True
    if not legacy or not (folder / "report.html").is_file():
        return False
    return all(f.is_file() and not f.is_symlink() and
               (f.name in _LEGACY_REPORT_FILES or f.suffix == ".png")
               for f in folder.iterdir())


def report_folder(out: str | Path, run: Path, default: bool) -> Path:
    """The absolute folder a report may be written to (and replace), or KtgError.

    `run` is the run directory (resolved); `default` says `out` is RUN/report, not a
    folder the user named (only then is a report of the marker-less layout replaced)."""
    p = _lexical(out)
    flag = "--out" if not default else "the report folder"
    if p.is_symlink():
        raise KtgError(f"{flag} {str(p)!r} is a symbolic link (to "
                       f"{os.readlink(p)!r}); a report is never written through a link, "
                       f"which would replace the link's target: remove the link or pass "
                       f"another --out")
    # inside the run (a shared directory), no component of the way may be a link
    for base in {run, _lexical(run)}:
        if _within(p, base):
            for parent in [p] + list(p.parents):
                if parent == base:
                    break
                if parent.is_symlink():
                    raise KtgError(f"{flag} {str(p)!r} goes through the symbolic link "
                                   f"{str(parent)!r} inside the run directory; links in a "
                                   f"run are not followed: pass another --out")
    real = Path(os.path.realpath(p.parent)) / p.name
    cwd = Path(os.path.realpath(os.getcwd()))
    for what, keep in (("the current directory", cwd), ("the run directory", run)):
        if _within(keep, real) or _within(keep, p):
            raise KtgError(f"{flag} {str(p)!r} is or contains {what}; a report folder is "
                           f"replaced whole, so it must be a folder of its own, e.g. "
                           f"{str(run / 'report')!r}")
    if p.exists() and not p.is_dir():
        raise KtgError(f"{flag} {str(p)!r} is a file; valid: a directory (it is replaced)")
    if p.is_dir() and any(p.iterdir()) and not is_report_folder(p, legacy=default):
        raise KtgError(f"{flag} {str(p)!r} is a non-empty directory that holds no report "
                       f"made by ktg (no {REPORT_MARKER} file); it would be replaced: "
                       f"choose an empty or new directory")
    return p


def building_folder(out: Path) -> Path:
    """A fresh folder beside `out` to build into (readable as the umask allows, unlike
    mkdtemp's private 0700), renamed over `out` by `swap_in`."""
    from .fileio import umask
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.building-"))
    os.chmod(tmp, 0o777 & ~umask())
    return tmp


def mark_report(folder: Path, run: Path) -> None:
    """Write the marker that lets a later report replace this folder."""
    (folder / REPORT_MARKER).write_text(json.dumps(
        {"tool": "ktg report", "run": str(run),
         "written": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")


def swap_in(tmp: Path, out: Path, legacy: bool = False) -> None:
    """Rename the finished folder `tmp` over `out`; the old `out` is deleted after, and
    only when it is (still) a report folder or empty: checked again right before, so a
    folder swapped in meanwhile is not deleted."""
    old = None
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise KtgError(f"{str(out)!r} changed while the report was built (it is now a "
                       f"link or a file); nothing was replaced")
    if out.exists():
        if any(out.iterdir()) and not is_report_folder(out, legacy):
            raise KtgError(f"{str(out)!r} changed while the report was built (it holds "
                           f"no report now); nothing was replaced")
        old = out.with_name(f".{out.name}.old-{os.getpid()}-{time.time_ns()}")
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

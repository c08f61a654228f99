"""A private PostgreSQL server for tests and for docs/scripts/storage_cost.py.

`PgServer` runs initdb and pg_ctl in a fresh folder under /tmp, listening on 127.0.0.1 on a
free port with trust authentication (no Unix socket), and stops it (pg_ctl stop -m
immediate) and removes the folder on `stop()` (also at interpreter exit, as a backstop).
PostgreSQL refuses to run as root: as root, every PostgreSQL command runs as the
unprivileged user `nobody` (uid 65534) and the data folder belongs to it; as another user,
the server runs as that user.

`pg_bin_dir()` is None only where no PostgreSQL binaries exist: the one reason to skip.
Anything else that goes wrong raises, with the server's log in the message.
"""
from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

NOBODY = 65534
TOOLS = ("initdb", "pg_ctl", "postgres")


def pg_bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: on the PATH (links followed, so
    that pg_ctl finds its own postgres), else /usr/lib/postgresql/<newest>/bin."""
    found = [shutil.which(t) for t in TOOLS]
    if all(found):
        dirs = {Path(os.path.realpath(f)).parent for f in found}
        if len(dirs) == 1:
            return dirs.pop()
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                    key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                    else 0, reverse=True):
        if all((Path(d) / t).is_file() for t in TOOLS):
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One private PostgreSQL server. `fast`: fsync and synchronous commit off (tests
    check behaviour, not durability); the cost measurement runs with the defaults."""

    def __init__(self, bin_dir: Path, fast: bool = True) -> None:
        self.bin = Path(bin_dir)
        self.fast = fast
        self.as_nobody = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="ktg-pg-", dir="/tmp"))
        os.chmod(self.root, 0o755)       # traversable by nobody
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port: int | None = None
        self._started = False
        atexit.register(self.stop)

    # ---- running PostgreSQL's own commands, as nobody when we are root --------------
    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        kw = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if self.as_nobody else {}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
               "HOME": str(self.root), "TZ": "UTC"}
        return subprocess.run([str(self.bin / args[0]), *args[1:]], cwd=self.root, env=env,
                              capture_output=True, text=True, timeout=timeout, **kw)

    def _check(self, p: subprocess.CompletedProcess, what: str) -> None:
        if p.returncode != 0:
            log = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL {what} failed (exit {p.returncode}):\n"
                               f"{p.stdout[-2000:]}\n{p.stderr[-2000:]}\n{log}")

    def start(self) -> PgServer:
        self.data.mkdir(mode=0o700)
        if self.as_nobody:
            os.chown(self.data, NOBODY, NOBODY)
            self.log.touch()
            os.chown(self.log, NOBODY, NOBODY)
        self._check(self._run("initdb", "-D", str(self.data), "-U", "postgres",
                              "--auth=trust", "-E", "UTF8", "--no-sync"), "initdb")
        opts = ["-c listen_addresses=127.0.0.1", "-c unix_socket_directories=''",
                "-c max_connections=200"]
        if self.fast:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        # the port is free when chosen; another process may take it before the server
        # binds: only that failure is tried again, on another port
        for _ in range(3):
            self.port = _free_port()
            p = self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data),
                          "-l", str(self.log),
                          "-o", " ".join([f"-p {self.port}", *opts]))
            if p.returncode == 0:
                self._started = True
                return self
            if "could not bind" not in self.log.read_text():
                break
        self._check(p, "start")
        raise AssertionError("unreachable")

    def stop(self) -> None:
        try:
            if self._started:
                self._started = False
                p = self._run("pg_ctl", "stop", "-m", "immediate", "-w", "-D",
                              str(self.data))
                self._check(p, "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # ---- databases ------------------------------------------------------------------
    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        import psycopg2
        conn = psycopg2.connect(self.url())
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

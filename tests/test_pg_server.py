"""The private PostgreSQL server of the tests (tests/pg.py): found where it is installed,
run unprivileged, gone afterwards; a skip only where no binaries exist."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import pg


def test_no_binaries_anywhere_is_the_one_reason_to_skip(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(pg.glob, "glob", lambda pattern: [])
    assert pg.pg_bin_dir() is None
    # binaries in /usr/lib/postgresql/N/bin only (not on the PATH) are found there
    fake = tmp_path / "lib" / "15" / "bin"
    fake.mkdir(parents=True)
    for tool in pg.TOOLS:
        (fake / tool).write_text("")
    monkeypatch.setattr(pg.glob, "glob", lambda pattern: [str(fake)])
    assert pg.pg_bin_dir() == fake


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status")


def test_the_server_runs_unprivileged_and_is_removed_after():
    bin_dir = pg.pg_bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL binaries")
    server = pg.PgServer(bin_dir).start()
    try:
        pid = int((server.data / "postmaster.pid").read_text().split()[0])
        want = pg.NOBODY if os.geteuid() == 0 else os.geteuid()
        assert want != 0 and _uid(pid) == want
        url = server.create_database("probe")
        assert url.endswith(f":{server.port}/probe")
    finally:
        server.stop()
    assert not server.root.exists()
    deadline = time.time() + 10  # stop -m immediate -w: the postmaster is gone
    while Path(f"/proc/{pid}").exists() and time.time() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists() or \
        "zombie" in Path(f"/proc/{pid}/status").read_text()

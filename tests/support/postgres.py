"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl on 127.0.0.1, one per test session.

The Debian package (``postgresql``, listed in .ci/apt-packages) puts its programs under
/usr/lib/postgresql/VERSION/bin. The server refuses to run as root: when the tests run as root the
cluster is initialised and started as the ``postgres`` user the package creates, in a temporary
directory owned by it. Each test gets a fresh database (:meth:`Cluster.new_database`); the session
fixture stops the cluster at the end (``pg_ctl stop``, then the postmaster's pid if it lingers).

Missing PostgreSQL skips locally and fails in CI (tests/support/components.py).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.components import require

WHY = "install the Debian package 'postgresql' and the Python package psycopg[binary] (.ci/apt-packages)"
START_TIMEOUT_S = 60


def pg_bin() -> Path | None:
    """The newest installed server's bin directory (initdb and pg_ctl), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def available() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return pg_bin() is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    port: int
    datadir: Path
    bindir: Path
    user: str | None  # the OS user that runs the server (None: the current one)
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
        return None


def _run(args: list[str], user: str | None, log: Path) -> None:
    if user is not None:
        args = ["su", user, "-s", "/bin/sh", "-c", " ".join(_quote(a) for a in args)]
    with log.open("ab") as out:
        subprocess.run(args, check=True, stdout=out, stderr=subprocess.STDOUT, timeout=START_TIMEOUT_S)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def start_cluster() -> Iterator[Cluster]:
    """Session fixture body: start, yield, stop (by pg_ctl, then by the postmaster's pid), remove.

    The directory is a fresh one under the system's temporary directory, not pytest's: the server's
    user must reach it, and pytest's directories are private to the current user."""
    require("PostgreSQL", available(), WHY)
    base = Path(tempfile.mkdtemp(prefix="ota-pg-"))
    try:
        yield from _serve(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _serve(base: Path) -> Iterator[Cluster]:
    bindir = pg_bin()
    assert bindir is not None
    user: str | None = None
    if os.geteuid() == 0:
        user = "postgres"
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            require(
                "PostgreSQL", False, "running as root needs the 'postgres' user the Debian package creates"
            )
            raise
        os.chown(base, entry.pw_uid, entry.pw_gid)
    datadir = base / "data"
    log = base / "server.log"
    log.touch()
    if user is not None:
        os.chown(log, pwd.getpwnam(user).pw_uid, -1)
    _run(
        [str(bindir / "initdb"), "-D", str(datadir), "-A", "trust", "-U", "postgres", "-E", "UTF8"], user, log
    )
    port = _free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {base} -c fsync=on -c max_connections=100"
    _run(
        [str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(log), "-w", "-o", options, "start"], user, log
    )
    cluster = Cluster(port, datadir, bindir, user)
    pid = cluster.postmaster_pid()
    try:
        yield cluster
    finally:
        try:
            _run([str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "fast", "-w", "stop"], user, log)
        except (subprocess.SubprocessError, OSError):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

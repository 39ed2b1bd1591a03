"""pcscd with vsmartcard's vpcd readers for the tests, and our emulated SIM inserted in them.

Recipe (docs/real-components.md, "PC/SC with a virtual reader"): the ``pcscd`` fixture (tests/conftest.py)
starts ``pcscd --foreground --config DIR`` once per session, where DIR is a private reader.conf.d
holding one vpcd entry on two free TCP ports (vpcd gives every entry two readers, "<name> 00 00" on
PORT and "<name> 00 01" on PORT+1). The system's ``/etc/reader.conf.d/vpcd`` (35963, 35964) is not
read, so the tests never take those ports from someone else. What cannot be private is pcsc-lite's
client socket ``/run/pcscd/pcscd.comm``: it is compiled into pcscd (pcscd 1.9.9 ignores
PCSCLITE_CSOCK_NAME), so when a pcscd already runs the fixture uses it, provided it serves the
packaged vpcd readers ("Virtual PCD 00 00" / "00 01" on 35963 / 35964), and never stops it.

A missing tool (pcscd, the vpcd driver, pyscard, opensc-tool, pcsc_scan) fails the test when the
environment variable CI is set (CI installs them: .ci/apt-packages, pyproject's [test] extra) and
skips it otherwise. Waits are bounded waits on a condition (a socket, a reader state), never sleeps.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import components

ROOT = Path(__file__).resolve().parents[1]
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
PCSCD_PID = Path("/run/pcscd/pcscd.pid")
FRIENDLY_NAME = "OTA-SIM vpcd"
SYSTEM_READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")
SYSTEM_PORT = 35963


def require(missing: str | None) -> None:
    """Fail under CI (the component is part of the CI machine), skip elsewhere."""
    components.require("pcsc", missing is None, f"{missing}; CI installs it (.ci/apt-packages, [test] extra)")


def scard() -> Any:
    try:
        from smartcard import scard as module
    except ImportError:
        require("pyscard is not installed (pip install pyscard)")
    return module


@dataclass
class Pcscd:
    """A running pcscd with two vpcd readers: ``readers[k]`` waits for a card on ``port + k``."""

    readers: tuple[str, str]
    port: int
    pid: int | None  # ours to stop; None: it was already running
    log: Path | None = None
    conf_dir: Path | None = None
    notes: list[str] = field(default_factory=list)


def _free_port_pair() -> int:
    """A port P with P and P+1 free on every interface (vpcd binds INADDR_ANY)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("", 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two consecutive free TCP ports")


def _running_pcscd() -> int | None:
    try:
        pid = int(PCSCD_PID.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def list_readers(timeout_s: float = 10.0) -> list[str]:
    """The readers pcscd reports, waiting (bounded) until its socket answers."""
    sc = scard()
    deadline = time.monotonic() + timeout_s
    while True:
        rv, context = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
        if rv == sc.SCARD_S_SUCCESS:
            try:
                rv, readers = sc.SCardListReaders(context, [])
            finally:
                sc.SCardReleaseContext(context)
            if rv == sc.SCARD_S_SUCCESS and readers:
                return list(readers)
        if time.monotonic() > deadline:
            return []
        time.sleep(0.05)  # polling an external daemon's socket, bounded by the deadline


def start_pcscd(workdir: Path) -> Iterator[Pcscd]:
    """The generator behind the session fixture ``pcscd``."""
    if shutil.which("pcscd") is None:
        require("pcscd is not installed (Debian package pcscd)")
    if not VPCD_DRIVER.exists():
        require(f"vpcd driver {VPCD_DRIVER} missing (Debian package vsmartcard-vpcd)")
    scard()
    running = _running_pcscd()
    if running is not None:
        readers = list_readers()
        if all(r in readers for r in SYSTEM_READERS):
            yield Pcscd(SYSTEM_READERS, SYSTEM_PORT, None, notes=[f"reused pcscd pid {running}"])
            return
        require(
            f"a pcscd (pid {running}) already runs without the vpcd readers {SYSTEM_READERS}; its socket "
            f"{PCSCD_SOCKET} is fixed, so the tests cannot start their own: stop it"
        )
    port = _free_port_pair()
    conf_dir = workdir / "reader.conf.d"
    conf_dir.mkdir(parents=True)
    # reader.conf(5): DEVICENAME /dev/null:PORT makes vpcd listen (server mode) on PORT and PORT+1.
    (conf_dir / "vpcd").write_text(
        f'FRIENDLYNAME "{FRIENDLY_NAME}"\n'
        f"DEVICENAME   /dev/null:{port:#06x}\n"
        f"LIBPATH      {VPCD_DRIVER}\n"
        f"CHANNELID    {port:#06x}\n"
    )
    log = workdir / "pcscd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["pcscd", "--foreground", "--config", str(conf_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    names = (f"{FRIENDLY_NAME} 00 00", f"{FRIENDLY_NAME} 00 01")
    try:
        readers = list_readers()
        if not all(r in readers for r in names):
            pytest.fail(f"pcscd did not come up with readers {names} (got {readers}); log: {log.read_text()}")
        yield Pcscd(names, port, proc.pid, log=log, conf_dir=conf_dir)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def reader_state(reader: str) -> tuple[bool, bytes]:
    """(card present, ATR) of ``reader`` now."""
    sc = scard()
    rv, context = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
    assert rv == sc.SCARD_S_SUCCESS, sc.SCardGetErrorMessage(rv)
    try:
        rv, states = sc.SCardGetStatusChange(context, 0, [(reader, sc.SCARD_STATE_UNAWARE)])
        assert rv == sc.SCARD_S_SUCCESS, sc.SCardGetErrorMessage(rv)
        _, state, atr = states[0]
        return bool(state & sc.SCARD_STATE_PRESENT), bytes(atr)
    finally:
        sc.SCardReleaseContext(context)


def wait_for_card(reader: str, *, present: bool, timeout_s: float = 15.0) -> bytes:
    """Block until pcscd reports a card in ``reader`` (or none); returns the ATR. pcscd notices a
    vpcd card by polling it (IFDHICCPresence), so this waits on pcscd's own state-change event."""
    sc = scard()
    rv, context = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
    assert rv == sc.SCARD_S_SUCCESS, sc.SCardGetErrorMessage(rv)
    try:
        deadline = time.monotonic() + timeout_s
        current = sc.SCARD_STATE_UNAWARE
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            rv, states = sc.SCardGetStatusChange(context, max(left_ms, 0), [(reader, current)])
            if rv == sc.SCARD_S_SUCCESS:
                _, state, atr = states[0]
                if bool(state & sc.SCARD_STATE_PRESENT) == present:
                    return bytes(atr)
                current = state & ~sc.SCARD_STATE_CHANGED
            elif rv != sc.SCARD_E_TIMEOUT:
                raise AssertionError(f"SCardGetStatusChange({reader!r}): {sc.SCardGetErrorMessage(rv)}")
            if time.monotonic() >= deadline:
                what = "not inserted" if present else "not removed"
                raise AssertionError(f"reader {reader!r}: card {what} within {timeout_s} s")
    finally:
        sc.SCardReleaseContext(context)


@contextlib.contextmanager
def inserted_cards(
    daemon: Pcscd, cards: list[tuple[Path, Path]], *, extra: tuple[str, ...] = ()
) -> Iterator[subprocess.Popen[str]]:
    """``sim-emulator pcsc`` (the public CLI) with ``cards`` [(profile, state)] in the daemon's readers
    0, 1, ...; yields once pcscd sees every card, stops it (SIGTERM) and waits for the readers to empty."""
    command = [sys.executable, "-m", "sim_emulator.cli", *extra, "pcsc", "--vpcd", f"127.0.0.1:{daemon.port}"]
    for profile, state in cards:
        command += ["--card", str(profile), "--state", str(state)]
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        for _ in cards:
            line = proc.stdout.readline()  # the CLI prints one line per connected card, or exits
            if "in vpcd" not in line:
                proc.wait(timeout=10)
                raise AssertionError(
                    f"sim-emulator pcsc: {line!r} {proc.stderr.read() if proc.stderr else ''}"
                )
        for k in range(len(cards)):
            wait_for_card(daemon.readers[k], present=True)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for k in range(len(cards)):
            wait_for_card(daemon.readers[k], present=False)

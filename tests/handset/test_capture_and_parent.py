"""``handset serve --pcap`` and ``--exit-with-parent`` (no orphan after a SIGKILLed OTA server)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from handset.capture_writer import CapturingCard, PcapWriter
from ota_protocols.capture import LINKTYPE_RAW, PCAP_MAGIC
from ota_protocols.errors import ConfigError
from tests.interop.support import write_network

ROOT = Path(__file__).resolve().parents[2]


def wait_until(what: str, predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)  # polling another process's exit: no notification for a non-child
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def gone(pid: int) -> bool:
    """Exited (no such process, or a zombie nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def read_records(path: Path) -> list[tuple[float, bytes]]:
    data = path.read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack("<IHHiIII", data[:24])
    assert (magic, linktype) == (PCAP_MAGIC, LINKTYPE_RAW)
    out, at = [], 24
    while at < len(data):
        sec, usec, incl, _ = struct.unpack("<IIII", data[at : at + 16])
        out.append((sec + usec / 1e6, data[at + 16 : at + 16 + incl]))
        at += 16 + incl
    return out


class EchoCard:
    def exchange(self, c_apdu: bytes) -> bytes:
        return b"\x90\x00"


def test_capturing_card_records_one_gsmtap_sim_record_per_exchange(tmp_path: Path) -> None:
    writer = PcapWriter(str(tmp_path / "c.pcap"), loop_now=100.0)
    card = CapturingCard(EchoCard(), writer, lambda: 101.5)
    assert card.exchange(bytes.fromhex("80c2000002d100")) == b"\x90\x00"
    assert card.reset() == b""
    writer.close()
    writer.close()  # idempotent
    [(stamp, packet)] = read_records(tmp_path / "c.pcap")
    assert abs(stamp - time.time()) < 60
    assert packet[9] == 17 and struct.unpack("!HH", packet[20:24]) == (4729, 4729)  # UDP 4729
    assert packet[28:44] == bytes((2, 4, 4)) + bytes(13)  # GSMTAP v2, type SIM
    assert packet[44:] == bytes.fromhex("80c2000002d100") + b"\x90\x00"  # C-APDU, then the response


def test_pcap_writer_refuses_an_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--pcap"):
        PcapWriter(str(tmp_path / "no" / "such" / "dir.pcap"), loop_now=0.0)


def test_serve_exit_with_parent_stops_at_stdin_eof_and_flushes_the_capture(tmp_path: Path) -> None:
    pcap = tmp_path / "h.pcap"
    handset = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "handset.cli",
            "serve",
            "--config",
            str(write_network(tmp_path, count=2)),
            "--exit-with-parent",
            "--pcap",
            str(pcap),
            "--report-file",
            str(tmp_path / "report.json"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert handset.stdout is not None and handset.stdin is not None
        assert "listening on" in handset.stdout.readline().decode()
        handset.stdin.close()  # what the kernel does when the parent dies
        assert handset.wait(timeout=15) == 0
    finally:
        if handset.poll() is None:
            handset.kill()
            handset.wait()
    assert json.loads((tmp_path / "report.json").read_text())["cards"]
    records = read_records(pcap)
    assert len(records) == 2  # one TERMINAL PROFILE per phone at power-on
    assert all(p[44] == 0x80 and p[45] == 0x10 for _, p in records)


def test_serve_exit_with_parent_needs_a_pipe(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "handset.cli",
            "serve",
            "--config",
            str(write_network(tmp_path)),
            "--exit-with-parent",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "handset: config error: --exit-with-parent: stdin must be a pipe (or socket) held by the parent"
    ]


PARENT = """
import asyncio, sys
from pathlib import Path
from ota_server.embedded_network import EmbeddedNetwork

async def main():
    network = EmbeddedNetwork(Path(sys.argv[1]), Path(sys.argv[2]))
    await network.start()
    print(network._proc.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.integration
def test_embedded_network_does_not_outlive_a_sigkilled_server(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(write_network(tmp_path)), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    child = 0
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline().decode().strip()
        assert line.isdigit(), line + (parent.stderr.read().decode() if parent.stderr else "")
        child = int(line)
        assert not gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        wait_until("the orphaned handset to exit", lambda: gone(child))
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child and not gone(child):
            os.kill(child, signal.SIGKILL)


def test_network_without_capture_wraps_nothing(tmp_path: Path) -> None:
    from handset.config import load_config
    from handset.service import HandsetService

    async def run() -> None:
        service = HandsetService(load_config(write_network(tmp_path, count=1)))
        await service.start(port=0)
        try:
            assert service.capture is None and service.server is not None and service.server.capture is None
            assert service.network is not None
            assert not any(isinstance(p.me.card, CapturingCard) for p in service.network.phones.values())
        finally:
            await service.stop()

    asyncio.run(run())


def test_campaign_pcap_with_smsc_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from ota_server.cli import main

    code = main(
        ["campaign", "run", str(ROOT / "configs/campaigns/demo.toml"), "--smsc", "127.0.0.1:9", "--pcap", "x"]
    )
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "ota-server: --pcap captures the embedded network only; not with --smsc"
    ]

"""Kannel (bearerbox + smsbox) as a third-party ESME driving our SMSC emulator.

An OTA command packet built by our packet tool goes in through Kannel's sendsms
HTTP interface (binary, UDH 027000, PID 127, class 2 → DCS F6), reaches the
handset SMSC as Kannel's own submit_sm (esm_class 0x43, TON/NPI 2/1), is run by
an emulated SIM, and the PoR comes back through Kannel: smsbox POSTs it to our
HTTP sink, where we decode it and check its checksum. Kannel's delivery report
arrives at the sink too.

External daemons give no readiness signal, so waits poll with a deadline
(``wait_until``); nothing else sleeps. Skipped when Kannel is not installed, failed in CI.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ota_protocols.fleet import FleetSpec, derive_card
from ota_server import packet_tool
from tests.support.components import on_path, require

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True, scope="module")
def _kannel() -> None:
    require(
        "kannel",
        on_path("bearerbox", "smsbox"),
        "bearerbox and smsbox: apt-get install kannel (.ci/apt-packages installs it for CI)",
    )


ROOT = Path(__file__).resolve().parents[2]
HANDSET_CONFIG = ROOT / "configs" / "handset.toml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)  # polling an external daemon: no readiness notification exists
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class Sink:
    """HTTP endpoint for smsbox's MO POSTs and Kannel's delivery-report callbacks."""

    def __init__(self) -> None:
        self.requests: queue.Queue[tuple[str, dict[str, list[str]], bytes]] = queue.Queue()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                url = urllib.parse.urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                sink.requests.put((url.path, urllib.parse.parse_qs(url.query, keep_blank_values=True), body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = _record
            do_POST = _record

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next(self, path: str, timeout_s: float = 30.0) -> tuple[dict[str, list[str]], bytes]:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(queue.Empty):
                got_path, query, body = self.requests.get(timeout=left)
                if got_path == path:
                    return query, body
        raise AssertionError(f"no request to {path} within {timeout_s} s")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture
def kannel_network(tmp_path: Path) -> Iterator[dict[str, object]]:
    handset = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "handset.cli",
            "serve",
            "--config",
            str(HANDSET_CONFIG),
            "--port",
            "0",
            "--report-file",
            str(tmp_path / "handset-report.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    processes = [handset]
    sink = Sink()
    try:
        assert handset.stdout is not None
        line = handset.stdout.readline().decode()
        assert "listening on" in line, line + (handset.stderr.read().decode() if handset.stderr else "")
        smsc_port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        ports = {
            "ADMIN_PORT": free_port(),
            "SMSBOX_PORT": free_port(),
            "SENDSMS_PORT": free_port(),
            "SINK_PORT": sink.port,
            "SMSC_PORT": smsc_port,
        }
        config = (Path(__file__).parent / "kannel.conf.in").read_text().replace("@RUNDIR@", str(tmp_path))
        for key, value in ports.items():
            config = config.replace(f"@{key}@", str(value))
        conf = tmp_path / "kannel.conf"
        conf.write_text(config)
        bearerbox = subprocess.Popen(
            ["bearerbox", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path
        )
        processes.append(bearerbox)

        def smsc_online() -> bool:
            url = f"http://127.0.0.1:{ports['ADMIN_PORT']}/status.txt?password=adminpw"
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return "online" in response.read().decode(errors="replace")
            except OSError:
                return False

        wait_until("Kannel's SMPP link to our SMSC", smsc_online)
        smsbox = subprocess.Popen(
            ["smsbox", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path
        )
        processes.append(smsbox)

        def sendsms_up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", ports["SENDSMS_PORT"])) == 0

        wait_until("smsbox's sendsms port", sendsms_up)
        yield {"ports": ports, "sink": sink, "tmp": tmp_path}
    finally:
        for process in reversed(processes):
            stop(process)
        sink.close()


def test_ota_command_through_kannel_reaches_the_sim_and_the_por_comes_back(
    kannel_network: dict[str, object],
) -> None:
    ports = kannel_network["ports"]
    sink = kannel_network["sink"]
    tmp = kannel_network["tmp"]
    assert isinstance(ports, dict) and isinstance(sink, Sink) and isinstance(tmp, Path)

    fleet_table = tomllib.loads(HANDSET_CONFIG.read_text())["fleet"]
    spec = FleetSpec(**{k: v for k, v in fleet_table.items() if k in FleetSpec.__dataclass_fields__})
    card = derive_card(spec, spec.first_index)
    aes = next(k for k in card.keysets if k.kvn == 1)
    security = {"spi": "1609", "kic": "12", "kid": "12", "kic_key": aes.kic.hex(), "kid_key": aes.kid.hex()}
    # SELECT MF, DF.GSM, EF.SPN, then READ BINARY of 3 octets: navigation only, the RFM TAR of the template.
    script = "00a4000c023f0000a4000c027f2000a4000c026f4600b0000003"
    packet = packet_tool.encode_command(security | {"tar": "b00010", "cntr": "0000000001", "data": script})

    query = urllib.parse.urlencode(
        {
            "username": "ota",
            "password": "otapw",
            "from": "12345",
            "to": card.msisdn,
            "udh": bytes.fromhex("027000"),
            "text": bytes.fromhex(packet["packet"]),
            "coding": "1",
            "mclass": "2",
            "alt-dcs": "1",
            "pid": "127",
            "dlr-mask": "3",
            "dlr-url": f"http://127.0.0.1:{ports['SINK_PORT']}/dlr?type=%d",
        },
        quote_via=urllib.parse.quote,
    )
    with urllib.request.urlopen(
        f"http://127.0.0.1:{ports['SENDSMS_PORT']}/cgi-bin/sendsms?{query}", timeout=10
    ) as response:
        assert response.read().decode().startswith("0: Accepted")

    mo, _ = sink.next("/mo")
    assert mo["udh"] == ["\x02q\x00"]  # 02 71 00: Kannel hands us the RPI UDH as text
    assert mo["from"][0].endswith(card.msisdn)
    assert mo["coding"] == ["1"] and mo["mclass"] == ["2"] and mo["dcs"] == ["246"]
    por = packet_tool.decode_response(security | {"user_data": "027100" + mo["bin"][0]})
    assert por["status"] == 0
    assert por["checksum_valid"] is True
    assert por["tar"] == "b00010" and por["cntr"] == "0000000001"
    # Compact response: 4 commands executed, 90 00, the 3 octets read; then the action-counter block.
    assert por["data"].startswith("049000")

    dlr, _ = sink.next("/dlr")
    assert dlr["type"] == ["1"]  # delivered to the phone

    log = (tmp / "bearerbox.log").read_text(errors="replace")
    assert "esm_class: 67" in log or "0x00000043" in log  # Kannel's esm_class 0x43 was accepted

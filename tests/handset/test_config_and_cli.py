"""Config loading (house-style §4), the ``handset serve`` CLI as a subprocess, and smpplib as the ESME."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from handset.config import HandsetConfig, load_config
from handset.service import HandsetService, build_cards
from ota_protocols.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "configs").glob("handset*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_shipped_configs_load(path: Path) -> None:
    config = load_config(path)
    assert config.fleet is not None and config.fleet.count == 120
    assert {e.system_id for e in config.smsc.esmes} >= {"ota", "kannel"}


def test_demo_config_builds_120_cards() -> None:
    cards = build_cards(load_config(ROOT / "configs" / "handset.toml"))
    assert len(cards) == 120 and len({c.msisdn for c in cards}) == 120


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        ("[smsc]\nprot = 1\n", "smsc.prot"),
        ("[smsc]\nport = 'x'\n", "smsc.port"),
        ("[radio.mt]\nloss_probability = 1.5\n", "radio.mt.loss_probability"),
        ("[radio.mo]\njitter = 'gauss'\n", "radio.mo.jitter"),
        ("[[smsc.esmes]]\nsystem_id = 'a'\n", "smsc.esmes[0].password"),
        (
            "[fleet]\nseed = 's'\ncount = 1\ncard_template = 'x'\nmsisdn_prefix = '4a'\n",
            "fleet.msisdn_prefix",
        ),
        ("[me]\nterminal_profile = 'zz'\n", "me.terminal_profile"),
        ("nonsense = 1\n", "nonsense"),
    ],
)
def test_config_errors_name_file_and_key_path(tmp_path: Path, text: str, key_path: str) -> None:
    path = tmp_path / "h.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key_path == key_path
    assert str(info.value).startswith(f"{path}: {key_path}: ")


def test_missing_template_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "h.toml"
    path.write_text("[fleet]\nseed = 's'\ncount = 2\ncard_template = 'nope.toml'\n")
    with pytest.raises(ConfigError) as info:
        build_cards(load_config(path))
    assert info.value.key_path == "fleet.card_template"


def _write_config(tmp_path: Path, count: int = 3) -> Path:
    template = (ROOT / "configs" / "cards" / "fleet-template.toml").as_posix()
    path = tmp_path / "handset.toml"
    path.write_text(
        "[smsc]\nport = 0\n[[smsc.esmes]]\nsystem_id = 'ota'\npassword = 'secret'\naddresses = ['12345']\n"
        f"[fleet]\nseed = 'cli'\ncount = {count}\ncard_template = '{template}'\n"
    )
    return path


def _run_cli(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "handset.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


def test_cli_serve_bind_and_sigterm_writes_report(tmp_path: Path) -> None:
    import smpplib.client

    config = _write_config(tmp_path)
    ready, report = tmp_path / "port", tmp_path / "report.json"
    proc = _run_cli(
        "serve",
        "--config",
        str(config),
        "--port",
        "0",
        "--ready-file",
        str(ready),
        "--report-file",
        str(report),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("handset: SMSC listening on 127.0.0.1:") and line.rstrip().endswith(
            "(3 phones)"
        )
        port = int(ready.read_text())
        assert line.split(":")[2].split()[0] == str(port)
        client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
        client.connect()
        client.bind_transceiver(system_id="ota", password="secret")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        client.disconnect()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    data = json.loads(report.read_text())
    assert len(data["cards"]) == 3 and data["cards"][0]["iccid"]
    assert data["smsc"]["binds"] == 1 and "submits" in data["smsc"]


@pytest.mark.parametrize("text", ["[smsc]\nport = 'x'\n", "not toml ["])
def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    proc = _run_cli("serve", "--config", str(path), "--port", "0")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and str(path) in err and "Traceback" not in err


def test_cli_missing_config_exits_2(tmp_path: Path) -> None:
    proc = _run_cli("serve", "--config", str(tmp_path / "none.toml"))
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1


@pytest.mark.asyncio
async def test_smpplib_esme_gets_the_por(tmp_path: Path) -> None:
    import smpplib.client

    from sim_emulator.api import card_from_fleet, load_card_template

    from .test_smsc_server import SPEC, ota_submit

    template = load_card_template(ROOT / "configs" / "cards" / "fleet-template.toml")
    config = load_config(_write_config(tmp_path))
    service = HandsetService(config, cards=[card_from_fleet(SPEC, i, template) for i in SPEC.indices])
    port = await service.start(host="127.0.0.1", port=0)
    received: list[object] = []
    sent: list[object] = []
    done = threading.Event()

    def esme() -> None:
        client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
        client.set_message_sent_handler(lambda pdu: sent.append(pdu))

        def on_deliver(pdu: object, **_: object) -> int:
            received.append(pdu)
            done.set()
            return 0

        client.set_message_received_handler(on_deliver)
        client.connect()
        try:
            client.bind_transceiver(system_id="ota", password="secret")
            fields = ota_submit(1)
            fields.update(registered_delivery=0)
            client.send_message(**fields)
            for _ in range(20):  # bounded: each read_once blocks at most `timeout`
                if done.is_set():
                    break
                client.read_once()
            client.unbind()
        finally:
            client.disconnect()

    try:
        async with asyncio.timeout(30):
            await asyncio.to_thread(esme)
    finally:
        await service.stop()
    assert sent and sent[0].status == 0 and sent[0].message_id  # type: ignore[attr-defined]
    pdu = received[0]
    assert pdu.esm_class == 0x40 and pdu.protocol_id == 0x7F and pdu.data_coding == 0xF6  # type: ignore[attr-defined]
    assert pdu.short_message[:3] == b"\x02\x71\x00"  # type: ignore[attr-defined]


def test_handset_config_default_is_empty_network() -> None:
    with pytest.raises(ConfigError):
        build_cards(HandsetConfig())


def test_cli_log_level_before_or_after_serve_spelled_as_everywhere(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.toml")
    for args in (
        ("--log-level", "info", "serve", "--config", missing),
        ("serve", "--config", missing, "--log-level", "ERROR"),
    ):
        _, err = (proc := _run_cli(*args)).communicate(timeout=20)
        assert proc.returncode == 2 and err.strip() == f"handset: config error: {missing}: no such file"
    _, err = (proc := _run_cli("serve", "--config", missing, "--log-level", "LOUD")).communicate(timeout=20)
    assert proc.returncode == 2 and "--log-level" in err and "invalid choice: 'LOUD'" in err

"""``sim-emulator pcsc`` against a scripted vpcd (the test plays pcscd's vpcd driver on 127.0.0.1):
power on, ATR request, APDUs with T=0 GET RESPONSE, two cards on two consecutive ports, vpcd
closing the connection, nothing listening, bad arguments. No pcscd needed; the real one is in
tests/interop/test_pcsc_card_tools.py."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from ota_protocols.errors import ConnectionLost
from sim_emulator.api import load_card
from sim_emulator.vpcd_client import VpcdCardClient
from sim_emulator.vpcd_link import CTRL_ATR, CTRL_OFF, CTRL_ON, frame

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CARD = ROOT / "configs" / "cards" / "example-card.toml"
ATR = bytes.fromhex("3b024f54")


class ScriptedVpcd:
    """One vpcd reader: accepts the card, then ``ask`` sends a message and returns its answer."""

    def __init__(self, port: int = 0) -> None:
        self.connected: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self.server: asyncio.Server | None = None
        self.port = port

    async def __aenter__(self) -> ScriptedVpcd:
        self.server = await asyncio.start_server(
            lambda r, w: self.connected.put_nowait((r, w)), "127.0.0.1", self.port
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, message: bytes) -> bytes:
    writer.write(frame(message))
    await writer.drain()
    length = int.from_bytes(await reader.readexactly(2), "big")
    return await reader.readexactly(length)


async def tell(writer: asyncio.StreamWriter, control: int) -> None:
    writer.write(frame(bytes([control])))
    await writer.drain()


def fresh_profile(tmp: Path, name: str = "card", iccid: str = "8988211000000000011") -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(EXAMPLE_CARD.read_text().replace('"8988211000000000011"', f'"{iccid}"'))
    return path


def test_the_client_answers_atr_and_apdus_with_the_cards_t0_behaviour(tmp_path: Path) -> None:
    async def scenario() -> list[bytes]:
        card = load_card(fresh_profile(tmp_path))
        async with ScriptedVpcd() as vpcd:
            client = VpcdCardClient(card, "127.0.0.1", vpcd.port)
            task = asyncio.create_task(client.run())
            async with asyncio.timeout(10):
                reader, writer = await vpcd.connected.get()
                answers = [await ask(reader, writer, bytes([CTRL_ATR]))]  # presence poll: no reset
                await tell(writer, CTRL_ON)
                answers.append(await ask(reader, writer, bytes([CTRL_ATR])))
                answers.append(await ask(reader, writer, bytes.fromhex("00a40004023f00")))
                answers.append(await ask(reader, writer, bytes.fromhex("00c0000020")))
                answers.append(await ask(reader, writer, bytes.fromhex("00c000000d")))
                await tell(writer, CTRL_OFF)
                answers.append(await ask(reader, writer, bytes.fromhex("00c000000d")))
                writer.close()
                with pytest.raises(ConnectionLost, match="vpcd closed the connection"):
                    await task
            assert client.apdus == 4
            return answers

    atr, atr_after_power_on, select, wrong_le, fcp, after_power_off = asyncio.run(scenario())
    assert atr == atr_after_power_on == ATR
    assert select == b"\x61\x0d"  # ISO/IEC 7816-3 §10.3.3: 13 octets of FCP wait for GET RESPONSE
    assert wrong_le == b"\x6c\x0d"  # Le 32 for 13 octets: 6C XX with the right length
    assert fcp[:1] == b"\x62" and fcp[-2:] == b"\x90\x00" and len(fcp) == 13 + 2
    # Power off then an APDU: the card was reset first (ISO/IEC 7816-3 §6.2), its GET RESPONSE data is gone.
    assert after_power_off == b"\x69\x85"


def test_nothing_listening_is_one_line_naming_the_address(tmp_path: Path) -> None:
    async def scenario() -> str:
        async with ScriptedVpcd() as vpcd:
            port = vpcd.port
        with pytest.raises(ConnectionLost) as caught:
            await VpcdCardClient(load_card(fresh_profile(tmp_path)), "127.0.0.1", port).run()
        return str(caught.value)

    message = asyncio.run(scenario())
    assert message.startswith("vpcd 127.0.0.1:") and "cannot connect (Connection refused)" in message
    assert "is pcscd running" in message


def test_the_cli_puts_two_cards_on_two_consecutive_ports_and_stops_on_sigterm(tmp_path: Path) -> None:
    """Card k goes to PORT+k; each prints one line once connected; SIGTERM ends it with 0."""

    async def scenario() -> tuple[int, str, list[bytes]]:
        first = fresh_profile(tmp_path, "first")
        second = fresh_profile(tmp_path, "second", iccid="8988211000000000029")
        # Two listeners on consecutive ports: bind the second next to the first (retry if taken).
        for _ in range(20):
            one = ScriptedVpcd()
            await one.__aenter__()
            two = ScriptedVpcd(one.port + 1)
            try:
                await two.__aenter__()
                break
            except OSError:
                await one.__aexit__()
        else:
            pytest.fail("no two consecutive free ports")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sim_emulator.cli", "pcsc", "--vpcd", f"127.0.0.1:{one.port}",
            "--card", str(first), "--card", str(second), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            async with asyncio.timeout(30):
                read_iccid = bytes.fromhex("00b000000a")
                efs = []
                for vpcd in (one, two):
                    reader, writer = await vpcd.connected.get()
                    await tell(writer, CTRL_ON)
                    for apdu in ("00a40004023f00", "00a40004022fe2"):
                        await ask(reader, writer, bytes.fromhex(apdu))
                    efs.append(await ask(reader, writer, read_iccid))
                proc.send_signal(signal.SIGTERM)
                out, err = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await one.__aexit__()
            await two.__aexit__()
        assert err == b"", err
        return proc.returncode or 0, out.decode(), efs

    code, out, efs = asyncio.run(scenario())
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2 and all(line.startswith("sim-emulator: card 89882110000000000") for line in lines)
    assert efs == [bytes.fromhex("988812010000000010f19000"), bytes.fromhex("988812010000000020f99000")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vpcd", "35963"], "sim-emulator: --vpcd: expected HOST:PORT, got '35963'"),
        (["--vpcd", "127.0.0.1:65535", "--card", "X"], "outside 1..65535"),
        (["--state", "a", "--state", "b"], "sim-emulator: --state: 2 --state for 1 --card"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    profile = fresh_profile(tmp_path)
    args = [str(profile) if a == "X" else a for a in args]

    async def run() -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sim_emulator.cli", "pcsc", "--card", str(profile), *args, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        return proc.returncode or 0, err.decode()

    code, err = asyncio.run(run())
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_vpcd_gone_ends_the_cli_with_one_line_and_status_1(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, str]:
        async with ScriptedVpcd() as vpcd:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sim_emulator.cli", "pcsc", "--vpcd", f"127.0.0.1:{vpcd.port}",
                "--card", str(fresh_profile(tmp_path)), cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            async with asyncio.timeout(30):
                _, writer = await vpcd.connected.get()
                writer.close()  # pcscd stopped
                _, err = await proc.communicate()
        return proc.returncode or 0, err.decode()

    code, err = asyncio.run(scenario())
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith("sim-emulator: vpcd 127.0.0.1:") and "vpcd closed the connection" in err

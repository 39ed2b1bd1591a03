"""The SMSC's limits on hostile peers, measured on loopback (issue #11, docs/handset.md "Limits on peers").

    python -m benchmarks.smsc_limits [--idle 1000] [--partial 1000] [--submits 100000]
                                     [--crowd 10000] [--passwords-s 12]

The SMSC (``handset.smsc_server.SmscServer``) runs alone in a child process, so that its resident
set size (RSS, /proc/self/status VmRSS after a garbage collection) is not mixed with the clients'.
Its network is a stub that accepts every MT and drops it: what is measured is the SMSC's own
bookkeeping, not the phones'.  The clients run here, in this process.  Printed:

1. RSS growth per 1,000 unbound idle connections (goal <= 4 MB); the connection limits are raised
   for this so that the server holds them all.
2. RSS before, while and after 1,000 connections each send the header of a 65 KB PDU and start on
   its body before any bind (goal: back within 10 MB of the start); with the default limits, and
   for comparison with ``max_pdu_octets_before_bind`` raised to the full PDU size.
3. RSS growth per million submit_sm (goal <= 2 MB): measured over ``--submits`` accepted
   submit_sm after a warm-up of 10,000, scaled to a million.
4. Time for a legitimate connect + bind_transceiver + submit_sm while ``--crowd`` unbound
   connections are open (goal <= 50 ms): once with the limits raised so that the server holds
   them all, once with the default limits and the crowd coming from 100 other loopback
   addresses (127.0.1.x).  The crowd is capped by ``ulimit -n`` (raised to the hard limit here
   and in the child when allowed).
5. Wrong-password binds from one peer as fast as it can send them, reconnecting when the SMSC
   closes the connection, for ``--passwords-s`` seconds with the default limits: attempts sent,
   and attempts whose password was checked per second after the first ten (goal <= 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import resource
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
RAISED = {
    "max_connections": 30_000,
    "max_connections_per_peer": 30_000,
    "session_init_timeout_s": 600.0,
}


# ---------------------------------------------------------------------------- the SMSC child


class _NullNetwork:
    """Every subscriber exists; every MT is accepted and dropped."""

    def __init__(self) -> None:
        self.accepted = 0
        self.counters: dict[str, int] = {}

    def has_subscriber(self, msisdn: str) -> bool:
        return True

    @property
    def queued(self) -> int:
        return 0

    def submit(self, message: Any) -> None:
        self.accepted += 1


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover - Linux only


def _raise_nofile() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def _serve(overrides: dict[str, Any]) -> None:
    from handset.config import EsmeConfig, SmscConfig
    from handset.smsc_server import SmscServer

    _raise_nofile()
    # The SMSC's own (rate-limited) warnings would interleave with the figures: errors only.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    config = SmscConfig(
        port=0,
        esmes=(EsmeConfig(system_id="bench", password="secret"),),
        traffic_log_interval_s=0.0,
        **overrides,
    )
    network = _NullNetwork()
    server = SmscServer(config, network)
    port = await server.start("127.0.0.1", 0)
    print(f"PORT {port}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"rss":
            gc.collect()
            state = {
                "rss_mb": _rss_mb(),
                "open": server.open_connections,
                "unbound": server.unbound_connections,
                "accepted": network.accepted,
                "counters": server.counters,
            }
            print(json.dumps(state), flush=True)
    await server.stop(grace_s=0.5)


# ---------------------------------------------------------------------------- the driver


class Smsc:
    """The child process and its little command channel."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc, self.port = proc, port

    @classmethod
    async def start(cls, **overrides: Any) -> Smsc:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.smsc_limits",
            "--serve",
            json.dumps(overrides),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            line = await proc.stdout.readline()
        return cls(proc, int(line.split()[1]))

    async def state(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"rss\n")
        async with asyncio.timeout(60):
            return json.loads(await self.proc.stdout.readline())  # type: ignore[no-any-return]

    async def settle(self, *, open_connections: int | None = None, tries: int = 600) -> dict[str, Any]:
        """The state once the child has seen what we did (bounded polling over its channel)."""
        state = await self.state()
        for _ in range(tries):
            if open_connections is None or state["open"] == open_connections:
                break
            await asyncio.sleep(0.05)
            state = await self.state()
        return state

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            async with asyncio.timeout(20):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def _pdu(command_id: int, seq: int, body: bytes = b"") -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, 0, seq) + body


def _bind(seq: int, password: str) -> bytes:
    body = b"bench\x00" + password.encode() + b"\x00" + b"\x00" + bytes((0x34, 0, 0)) + b"\x00"
    return _pdu(0x09, seq, body)


def _submit(seq: int) -> bytes:
    body = (
        b"\x00"  # service_type
        + b"\x01\x01" + b"12345\x00"  # source
        + b"\x01\x01" + b"491700000001\x00"  # destination
        + bytes((0x40, 0x7F, 0))  # esm_class, protocol_id, priority_flag
        + b"\x00\x00"  # schedule_delivery_time, validity_period
        + bytes((0, 0, 0xF6, 0))  # registered_delivery, replace_if_present, data_coding, sm_default_msg_id
        + bytes((20,)) + b"\x02\x70\x00" + bytes(17)  # sm_length, short_message
    )  # fmt: skip
    return _pdu(0x04, seq, body)


async def _read_pdu(reader: asyncio.StreamReader) -> tuple[int, int, int]:
    header = await reader.readexactly(16)
    length, command_id, status, seq = struct.unpack(">IIII", header)
    if length > 16:
        await reader.readexactly(length - 16)
    return command_id, status, seq


async def _open(port: int, n: int, *, local_hosts: list[str] | None = None) -> list[asyncio.StreamWriter]:
    writers: list[asyncio.StreamWriter] = []

    async def one(i: int) -> None:
        local = (local_hosts[i % len(local_hosts)], 0) if local_hosts else None
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=local)
            writers.append(writer)

    for start in range(0, n, 500):
        await asyncio.gather(*(one(i) for i in range(start, min(n, start + 500))))
    return writers


def _close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.transport.abort()


async def idle_connections(n: int) -> None:
    smsc = await Smsc.start(**RAISED)
    try:
        before = await smsc.settle()
        writers = await _open(smsc.port, n)
        held = await smsc.settle(open_connections=len(writers))
        growth = held["rss_mb"] - before["rss_mb"]
        print(
            f"1. unbound idle connections: {held['open']} held, RSS {before['rss_mb']:.1f} -> "
            f"{held['rss_mb']:.1f} MB: {growth / held['open'] * 1000:.2f} MB per 1,000 (goal <= 4)"
        )
        _close_all(writers)
    finally:
        await smsc.stop()


async def partial_pdus(n: int, *, label: str, **overrides: Any) -> None:
    smsc = await Smsc.start(**RAISED, **overrides)
    try:
        before = await smsc.settle()
        body = bytes(64 * 1024)
        writers = await _open(smsc.port, n)
        for writer in writers:
            # The header of a 65,552-octet submit_sm, then 64 KiB of its body: one octet short.
            writer.write(struct.pack(">IIII", 16 + len(body) + 1, 0x04, 0, 1) + body)
        await asyncio.gather(*(_drain(w) for w in writers))
        during = await smsc.settle()
        _close_all(writers)
        after = await smsc.settle(open_connections=0)
        refused = during["counters"]["protocol_errors"]
        print(
            f"2. {n} partial 65 KB PDUs before bind ({label}): RSS {before['rss_mb']:.1f} MB at the start, "
            f"{during['rss_mb']:.1f} MB with them open ({refused} refused on the header, "
            f"{during['open']} connections left), {after['rss_mb']:.1f} MB after they closed: "
            f"{after['rss_mb'] - before['rss_mb']:+.1f} MB (goal within 10)"
        )
    finally:
        await smsc.stop()


async def _drain(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        async with asyncio.timeout(10):
            await writer.drain()


async def _bound(port: int, *, local: str | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, local_addr=(local, 0) if local else None
    )
    writer.write(_bind(1, "secret"))
    _, status, _ = await _read_pdu(reader)
    assert status == 0, f"bind refused: {status:#x}"
    return reader, writer


async def submits(n: int) -> None:
    smsc = await Smsc.start()
    try:
        reader, writer = await _bound(smsc.port)
        window = 256

        async def send(count: int, first_seq: int) -> None:
            sent = received = 0
            seq = first_seq
            while received < count:
                while sent < count and sent - received < window:
                    writer.write(_submit(seq))
                    seq += 1
                    sent += 1
                _, status, _ = await _read_pdu(reader)
                assert status == 0, f"submit_sm refused: {status:#x}"
                received += 1

        await send(10_000, 2)
        warm = await smsc.settle()
        started = time.monotonic()
        await send(n, 20_000)
        wall = time.monotonic() - started
        done = await smsc.settle()
        growth = done["rss_mb"] - warm["rss_mb"]
        print(
            f"3. submit_sm: {n} accepted in {wall:.1f} s ({n / wall:,.0f}/s) after 10,000 warm-up: RSS "
            f"{warm['rss_mb']:.1f} -> {done['rss_mb']:.1f} MB: {growth * 1_000_000 / n:+.2f} MB per million "
            f"(measured over {n:,}, scaled; goal <= 2)"
        )
        writer.transport.abort()
    finally:
        await smsc.stop()


async def _legit_ms(port: int, rounds: int = 20) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        reader, writer = await _bound(port)
        writer.write(_submit(2))
        _, status, _ = await _read_pdu(reader)
        times.append((time.perf_counter() - started) * 1000)
        assert status == 0
        writer.transport.abort()
    return times


async def crowd(n: int, *, raised: bool) -> None:
    smsc = await Smsc.start(**(RAISED if raised else {}))
    hosts = None if raised else [f"127.0.1.{i}" for i in range(1, 101)]
    try:
        writers = await _open(smsc.port, n, local_hosts=hosts)
        state = await smsc.settle(open_connections=len(writers) if raised else None, tries=200)
        times = await _legit_ms(smsc.port)
        c = (await smsc.state())["counters"]
        how = (
            "limits raised, all held"
            if raised
            else f"default limits, crowd from 100 addresses: {c['connections_refused']} refused, "
            f"{c['connections_evicted']} evicted"
        )
        print(
            f"4. bind + submit_sm with {len(writers)} unbound connections opened ({how}; "
            f"{state['open']} open at the SMSC): median "
            f"{statistics.median(times):.1f} ms, max {max(times):.1f} ms over {len(times)} (goal <= 50)"
        )
        _close_all(writers)
    finally:
        await smsc.stop()


async def passwords(seconds: float) -> None:
    smsc = await Smsc.start()
    try:
        attempts: list[tuple[float, bool]] = []  # (when, password checked)
        reconnects = 0
        deadline = time.monotonic() + seconds
        seq = 0
        while time.monotonic() < deadline:
            reader, writer = await asyncio.open_connection("127.0.0.1", smsc.port)
            try:
                while time.monotonic() < deadline:
                    seq += 1
                    writer.write(_bind(seq, "wrong"))
                    _, status, _ = await _read_pdu(reader)
                    attempts.append((time.monotonic(), status == 0x0E))  # ESME_RINVPASWD: checked
            except (asyncio.IncompleteReadError, ConnectionError):
                reconnects += 1  # the session_init_timer closed it: the attacker connects again
            finally:
                writer.transport.abort()
        rest = attempts[10:]
        span = rest[-1][0] - rest[0][0] if len(rest) > 1 else float("nan")
        checked_after = sum(1 for _, checked in rest if checked)
        total_checked = sum(1 for _, checked in attempts if checked)
        print(
            f"5. wrong passwords from one peer for {seconds:.0f} s: {len(attempts):,} sent "
            f"({len(attempts) / seconds:,.0f}/s, {reconnects} reconnects), {total_checked} checked; "
            f"after the first ten: {checked_after} checked in {span:.1f} s = {checked_after / span:.2f}/s "
            "(goal <= 1)"
        )
    finally:
        await smsc.stop()


async def main(args: argparse.Namespace) -> None:
    soft = _raise_nofile()
    crowd_n = min(args.crowd, soft - 200)
    print(
        f"SMSC limits on loopback (python {sys.version.split()[0]}, open-file limit {soft}; "
        f"the SMSC runs in a child process with a null network)"
    )
    await idle_connections(args.idle)
    await partial_pdus(args.partial, label="default max_pdu_octets_before_bind = 1024")
    await partial_pdus(args.partial, label="limit off, for comparison", max_pdu_octets_before_bind=66_560)
    await submits(args.submits)
    if crowd_n < args.crowd:
        print(f"   (crowd lowered from {args.crowd} to {crowd_n}: ulimit -n)")
    await crowd(crowd_n, raised=True)
    await crowd(crowd_n, raised=False)
    await passwords(args.passwords_s)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.smsc_limits", description=__doc__)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--partial", type=int, default=1000)
    parser.add_argument("--submits", type=int, default=100_000)
    parser.add_argument("--crowd", type=int, default=10_000)
    parser.add_argument("--passwords-s", type=float, default=12.0)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = _arguments()
    if arguments.serve is not None:
        asyncio.run(_serve(json.loads(arguments.serve)))
    else:
        asyncio.run(main(arguments))

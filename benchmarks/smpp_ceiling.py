"""The bare SMPP ceiling of this machine: a plain smpplib ESME against an asyncio responder on
smpplib's codec, two processes, no crypto, no card, no database (issue #14).

    python -m benchmarks.smpp_ceiling [--messages 20000] [--window 256]

What the OTA figure of ``benchmarks.e2e`` is compared with, in the same run. One round trip =
an OTA-shaped submit_sm (esm_class 0x40, PID 0x7F, DCS 0xF6, ``02 70 00`` + 57 octets) written by
smpplib's ``Client.send_message`` -> the responder parses it with ``smpplib.smpp.parse_pdu`` and
answers a submit_sm_resp built by ``make_pdu`` -> the ESME reads it with ``Client.read_pdu``. The
ESME keeps ``window`` submits outstanding from one thread (send one per answer), so it needs no
lock and no reader thread; the responder writes what one read produced in one ``write``.

Printed: round trips/s (wall) and the CPU-µs per round trip of each process (ESME: this process,
responder: the child, both from ``getrusage``).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

SYSTEM_ID, PASSWORD = "bench", "secret"
MSISDN = "491700000001"
USER_DATA = b"\x02\x70\x00" + bytes(range(57))


@dataclass(frozen=True, slots=True)
class Ceiling:
    round_trips: int
    wall_s: float
    esme_cpu_s: float
    responder_cpu_s: float

    @property
    def per_s(self) -> float:
        return self.round_trips / self.wall_s

    @property
    def esme_us(self) -> float:
        return self.esme_cpu_s / self.round_trips * 1e6

    @property
    def responder_us(self) -> float:
        return self.responder_cpu_s / self.round_trips * 1e6


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Responder(asyncio.Protocol):
    """One ESME connection, answered on smpplib's codec (smpp-and-peers.md §3)."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        import smpplib.smpp

        buffer = self.buffer
        buffer += data
        out: list[bytes] = []
        while len(buffer) >= 16:
            length = int.from_bytes(buffer[:4], "big")
            if len(buffer) < length:
                break
            raw = bytes(buffer[:length])
            del buffer[:length]
            request = smpplib.smpp.parse_pdu(raw, sequence=0, allow_unknown_opt_params=True)
            command = request.command
            if command == "submit_sm":
                self.next_id += 1
                response = smpplib.smpp.make_pdu("submit_sm_resp", message_id=f"{self.next_id:010X}")
            elif command.startswith("bind_"):
                response = smpplib.smpp.make_pdu(command + "_resp", system_id="CEILING")
            elif command in ("unbind", "enquire_link"):
                response = smpplib.smpp.make_pdu(command + "_resp")
            else:
                continue
            response.sequence = request.sequence  # after building (smpp-and-peers.md §3, gotcha 2)
            out.append(response.generate())
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


def _serve(conn: multiprocessing.connection.Connection) -> None:
    """Child process: the responder on 127.0.0.1; sends its port, then its CPU seconds at the end."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Responder, "127.0.0.1", 0)
        conn.send(server.sockets[0].getsockname()[1])
        stop = asyncio.Event()
        loop.add_reader(conn.fileno(), stop.set)
        await stop.wait()
        loop.remove_reader(conn.fileno())
        server.close()

    asyncio.run(main())
    conn.recv()  # the "stop" that woke it
    conn.send(_cpu_s())


def _drive(port: int, messages: int, window: int) -> tuple[float, float]:
    """The bare ESME: bind, keep ``window`` submit_sm outstanding; (wall s, CPU s) of the flow."""
    import smpplib.client

    client = smpplib.client.Client("127.0.0.1", port, timeout=30, allow_unknown_opt_params=True)
    client.connect()
    try:
        client.bind_transceiver(system_id=SYSTEM_ID, password=PASSWORD)
        fields = {
            "source_addr_ton": 1,
            "source_addr_npi": 1,
            "source_addr": "12345",
            "dest_addr_ton": 1,
            "dest_addr_npi": 1,
            "destination_addr": MSISDN,
            "esm_class": 0x40,
            "protocol_id": 0x7F,
            "data_coding": 0xF6,
            "short_message": USER_DATA,
        }
        started, cpu = time.perf_counter(), _cpu_s()
        sent = answered = 0
        for _ in range(min(window, messages)):
            client.send_message(**fields)
            sent += 1
        while answered < messages:
            pdu = client.read_pdu()
            if pdu.command != "submit_sm_resp":
                continue
            if pdu.status:
                raise RuntimeError(f"the responder refused submit_sm: status {pdu.status:#x}")
            answered += 1
            if sent < messages:
                client.send_message(**fields)
                sent += 1
        wall, used = time.perf_counter() - started, _cpu_s() - cpu
        client.unbind()
        return wall, used
    finally:
        client.disconnect()


class ChildServer:
    """A server in a spawned child process (so that it has a core of its own): ``target(conn)`` sends
    its port on ``conn`` once listening and serves until it reads "stop" (some then send a last
    answer: :meth:`stop`)."""

    def __init__(self, target: Callable[[multiprocessing.connection.Connection], None], name: str) -> None:
        self._conn, child = multiprocessing.Pipe()
        self._process = multiprocessing.get_context("spawn").Process(target=target, args=(child,), name=name)
        self._name = name
        self._stopped = False

    def __enter__(self) -> int:
        """Start it; its port."""
        self._process.start()
        if not self._conn.poll(30):
            self.__exit__()
            raise RuntimeError(f"benchmarks: the {self._name} child process did not start in 30 s")
        port: int = self._conn.recv()
        return port

    def stop(self, *, answer: bool = False) -> object:
        """Tell it to stop; with ``answer``, the last thing it sends (None after 30 s without)."""
        if not self._stopped:
            self._stopped = True
            self._conn.send("stop")
            if answer and self._conn.poll(30):
                return self._conn.recv()
        return None

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)


def measure(messages: int = 20000, window: int = 256) -> Ceiling:
    """One ceiling run: the responder in a child process, the bare ESME here."""
    server = ChildServer(_serve, "ceiling responder")
    with server as port:
        wall, esme_cpu = _drive(port, messages, window)
        responder_cpu = server.stop(answer=True)
    return Ceiling(messages, wall, esme_cpu, float(responder_cpu or 0.0))  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000, help="round trips (default 20000)")
    parser.add_argument("--window", type=int, default=256, help="outstanding submit_sm (default 256)")
    args = parser.parse_args()
    if args.messages < 1 or args.window < 1:
        parser.error("--messages and --window must be at least 1")
    c = measure(args.messages, args.window)
    print(
        f"bare smpplib ceiling: {c.per_s:,.0f} round trips/s ({c.round_trips} in {c.wall_s:.2f} s); "
        f"CPU us/round trip: ESME {c.esme_us:.0f}, responder {c.responder_us:.0f}"
    )


if __name__ == "__main__":
    main()

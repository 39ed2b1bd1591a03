"""``handset serve --pcap FILE``: the thin file shell around the pure builders of ``ota_protocols.capture``.

What goes in (libpcap, LINKTYPE_RAW, docs/interop.md "Capture"):

* every SMPP connection as one TCP/IPv4 stream between the ESME's real address and
  port (client) and the SMSC's (server): handshake at accept, then each chunk read
  from or written to the socket as PSH-ACK segments, at the time it was read or
  handed to the transport;
* every APDU exchange between a phone and its SIM as GSMTAP v2 type SIM on UDP
  4729 (C-APDU header + command data + response data + SW1 SW2, one record per
  exchange, as Osmocom SIMtrace does): TERMINAL PROFILE, ENVELOPE, GET RESPONSE,
  FETCH, TERMINAL RESPONSE.

Times are the event loop's clock mapped to wall-clock epoch seconds (one offset taken
at start).  The file is written through a 64 KiB buffer and flushed on :meth:`close`
(``handset serve`` closes it on SIGTERM/SIGINT and on parent death).  With no
``--pcap`` none of this exists: the SMSC and the phones hold ``None`` and the SIMs are
not wrapped, so a run without capture pays nothing.

Glossary: GSMTAP GSM tap protocol (osmocom); ESME/SMSC SMPP client/server.
"""

from __future__ import annotations

import logging
import time
from typing import Any, BinaryIO

from ota_protocols.capture import GSMTAP_PORT, TcpStream, gsmtap_sim, pcap_header, pcap_record, udp_packet
from ota_protocols.errors import ConfigError

__all__ = ["CapturingCard", "PcapWriter"]

log = logging.getLogger(__name__)
_LOOPBACK = "127.0.0.1"


class PcapWriter:
    """One pcap file; ``loop_now`` is the loop clock when the writer starts (for the epoch offset)."""

    def __init__(self, path: str, *, loop_now: float) -> None:
        try:
            self._file: BinaryIO | None = open(path, "wb", buffering=1 << 16)  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise ConfigError("--pcap", f"cannot write {path!r}: {exc.strerror}") from None
        self.path = path
        self._offset = time.time() - loop_now
        self._ident = 0
        self.records = 0
        self._file.write(pcap_header())

    def _write(self, records: list[bytes]) -> None:
        if self._file is not None:
            self._file.write(b"".join(records))
            self.records += len(records)

    # ------------------------------------------------------------------ SMPP over TCP

    def tcp_open(self, client: tuple[Any, ...], server: tuple[Any, ...], loop_time: float) -> TcpStream:
        """A new connection (``client``/``server`` are socket addresses): its handshake, and its stream."""
        stream = TcpStream(_ipv4(client[0]), int(client[1]), _ipv4(server[0]), int(server[1]))
        self._write(stream.open(self._offset + loop_time))
        return stream

    def tcp_data(self, stream: TcpStream, from_client: bool, data: bytes, loop_time: float) -> None:
        self._write(stream.data(self._offset + loop_time, from_client, data))

    # ------------------------------------------------------------------ SIM APDUs over GSMTAP

    def sim_exchange(self, c_apdu: bytes, response: bytes, loop_time: float) -> None:
        self._ident = (self._ident + 1) & 0xFFFF
        packet = udp_packet(
            _LOOPBACK, GSMTAP_PORT, _LOOPBACK, GSMTAP_PORT, gsmtap_sim(c_apdu + response), self._ident
        )
        self._write([pcap_record(self._offset + loop_time, packet)])

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()
            log.info("capture: %d records written to %s", self.records, self.path)


def _ipv4(host: str) -> str:
    """IPv4 text for the capture (IPv6 loopback and v4-mapped addresses folded to IPv4)."""
    if host.startswith("::ffff:"):
        return host[7:]
    if ":" in host:
        return _LOOPBACK
    return host


class CapturingCard:
    """Wraps a phone's SIM port: every ``exchange`` is recorded (after the card answered).

    ``reset`` and ``stop_after_actions`` pass through (optional hooks of
    ``mobile_equipment.Card``). An exchange that raises (card torn off) is not recorded:
    the card gave no response.
    """

    __slots__ = ("card", "clock", "writer")

    def __init__(self, card: Any, writer: PcapWriter, clock: Any) -> None:
        self.card = card
        self.writer = writer
        self.clock = clock  # loop.time

    def reset(self) -> bytes:
        reset = getattr(self.card, "reset", None)
        return reset() if callable(reset) else b""

    def stop_after_actions(self, k: int | None) -> None:
        hook = getattr(self.card, "stop_after_actions", None)
        if callable(hook):
            hook(k)

    def exchange(self, c_apdu: bytes) -> bytes:
        response: bytes = self.card.exchange(c_apdu)
        self.writer.sim_exchange(c_apdu, response, self.clock())
        return response

"""Packet-capture records for Wireshark: SMPP as TCP/IPv4 streams, SIM APDUs as GSMTAP over UDP.

Formats: libpcap file format (tcpdump.org, LINKTYPE_RAW = 101: each record is
an IPv4 packet); IPv4 (RFC 791), TCP (RFC 9293), UDP (RFC 768); GSMTAP v2
(osmocom libosmocore ``gsmtap.h``): 16-octet header ``02 04 04`` + 13 zero
octets for type SIM, on UDP port 4729, payload = C-APDU header + command data +
response data + SW1 SW2, the way SIMtrace records an exchange.

Glossary: SYN/ACK/PSH TCP flags, ISN initial sequence number, GSMTAP GSM
tap protocol.

Pure: timestamps come in as arguments, output is bytes; the shells write files.
A :class:`TcpStream` synthesises a consistent stream (handshake, sequence and
acknowledgement numbers) so that Wireshark reassembles PDUs split across reads.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

LINKTYPE_RAW = 101
PCAP_MAGIC = 0xA1B2C3D4
GSMTAP_PORT = 4729
GSMTAP_TYPE_SIM = 0x04
_MAX_SEGMENT = 1400


def pcap_header(*, snaplen: int = 65535, linktype: int = LINKTYPE_RAW) -> bytes:
    """The 24-octet global header (version 2.4, microsecond timestamps)."""
    return struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(timestamp: float, packet: bytes) -> bytes:
    seconds = int(timestamp)
    micros = round((timestamp - seconds) * 1_000_000)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    return struct.pack("<IIII", seconds, micros, len(packet), len(packet)) + packet


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip(src: bytes, dst: bytes, protocol: int, payload: bytes, ident: int) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, 64, protocol, 0, src, dst
    )
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:] + payload


def _transport_checksum(src: bytes, dst: bytes, protocol: int, segment: bytes) -> int:
    pseudo = src + dst + struct.pack("!BBH", 0, protocol, len(segment))
    return _checksum(pseudo + segment)


def ipv4(address: str) -> bytes:
    parts = [int(p) for p in address.split(".")]
    return bytes(parts)


def udp_packet(src: str, sport: int, dst: str, dport: int, payload: bytes, ident: int = 0) -> bytes:
    s, d = ipv4(src), ipv4(dst)
    segment = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    checksum = _transport_checksum(s, d, 17, segment) or 0xFFFF
    segment = segment[:6] + struct.pack("!H", checksum) + segment[8:]
    return _ip(s, d, 17, segment, ident)


def gsmtap_sim(apdu_exchange: bytes) -> bytes:
    """GSMTAP v2 header for type SIM, then the exchange (command, data, response, SW)."""
    return bytes((2, 4, GSMTAP_TYPE_SIM)) + bytes(13) + apdu_exchange


@dataclass(slots=True)
class TcpStream:
    """One TCP connection between a client and a server, as a capture would show it."""

    client: str
    client_port: int
    server: str
    server_port: int
    _seq: dict[bool, int] = field(default_factory=lambda: {True: 1000, False: 5000})
    _ident: int = 0
    _opened: bool = False

    def _packet(self, from_client: bool, flags: int, payload: bytes = b"") -> bytes:
        src, sport, dst, dport = (
            (self.client, self.client_port, self.server, self.server_port)
            if from_client
            else (self.server, self.server_port, self.client, self.client_port)
        )
        seq, ack = self._seq[from_client], self._seq[not from_client]
        segment = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
        s, d = ipv4(src), ipv4(dst)
        checksum = _transport_checksum(s, d, 6, segment)
        segment = segment[:16] + struct.pack("!H", checksum) + segment[18:]
        self._ident += 1
        return _ip(s, d, 6, segment, self._ident)

    def open(self, timestamp: float) -> list[bytes]:
        """SYN, SYN-ACK, ACK records."""
        self._opened = True
        syn = self._packet(True, 0x02)
        self._seq[True] += 1
        syn_ack = self._packet(False, 0x12)
        self._seq[False] += 1
        ack = self._packet(True, 0x10)
        return [pcap_record(timestamp, p) for p in (syn, syn_ack, ack)]

    def data(self, timestamp: float, from_client: bool, payload: bytes) -> list[bytes]:
        """PSH-ACK records carrying ``payload`` (opens the stream first if needed)."""
        records = [] if self._opened else self.open(timestamp)
        for start in range(0, len(payload), _MAX_SEGMENT):
            chunk = payload[start : start + _MAX_SEGMENT]
            records.append(pcap_record(timestamp, self._packet(from_client, 0x18, chunk)))
            self._seq[from_client] = (self._seq[from_client] + len(chunk)) & 0xFFFFFFFF
        return records

"""A minimal card for the OTA server's tests: opens command packets, runs actions, builds PoRs.

Built on the shared protocol package only (the real card is sim_emulator, which the
server's tests do not import). Counter mode "higher" (SPI1 b5b4 = 10), compact scripts,
the action counter block ``AC 08 before after`` at the end of the PoR's data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ota_protocols.action_counter import CounterReport, is_counted
from ota_protocols.apdu.apdu import CommandApdu, is_success_sw
from ota_protocols.apdu.remote_commands import CompactResponse, decode_compact_commands
from ota_protocols.secured_packet.command_packet import open_command_packet, parse_command_header
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.response_packet import (
    ResponsePacket,
    encode_response_packet,
    seal_response,
)
from ota_protocols.sms.concatenation import Reassembler

AES_KIC_KEY = bytes(range(16))
AES_KID_KEY = bytes(range(16, 32))


def aes_keys() -> PacketKeys:
    return PacketKeys(kic_key=AES_KIC_KEY, kid_key=AES_KID_KEY)


@dataclass
class CardSim:
    keys: PacketKeys
    action_counter: int = 0
    cntr: int = 0
    journal: list[tuple[int, bytes]] = field(default_factory=list)
    # apdu -> failing SW (or None to succeed); called for every command
    fail: Callable[[CommandApdu], int | None] = lambda apdu: None
    zero_cntr_errors: bool = False
    reassembler: Reassembler = field(default_factory=lambda: Reassembler(timeout_s=60))

    def receive_segment(self, user_data: bytes) -> bytes | None:
        whole = self.reassembler.add("ota", user_data, 0.0)
        if whole is None:
            return None
        return self.receive(whole[3:] if whole[:3] == b"\x02\x70\x00" else whole[1 + whole[0] :])

    def receive(self, packet: bytes) -> bytes | None:
        header = parse_command_header(packet)
        opened = open_command_packet(header, self.keys)
        spi, kic, kid, tar = header.spi, header.kic, header.kid, header.tar
        if opened.checksum_valid is False:
            return self._error(tar, opened.cntr, 0x01)
        if opened.cntr <= self.cntr:
            return self._error(tar, opened.cntr, 0x02)
        self.cntr = opened.cntr
        commands = decode_compact_commands(opened.data)
        before = self.action_counter
        executed = 0
        sw = 0x9000
        for apdu in commands:
            executed += 1
            failing = self.fail(apdu)
            sw = failing if failing is not None else (0x9000 if is_counted(apdu.ins) else 0x610F)
            if not is_success_sw(sw):
                break
            if is_counted(apdu.ins):
                self.action_counter += 1
                self.journal.append((self.action_counter, apdu.encode_t0()))
        data = (CompactResponse(executed, sw).encode() if commands else b"") + CounterReport(
            before, self.action_counter
        ).encode()
        response = ResponsePacket(tar, opened.cntr, 0x00, data)
        return encode_response_packet(response, spi, kic, kid, self.keys)

    def _error(self, tar: bytes, cntr: int, status: int) -> bytes:
        # protocols.md §6.4: error PoRs unsecured; CNTR echoed or zero.
        return seal_response(ResponsePacket(tar, 0 if self.zero_cntr_errors else cntr, status), None, None)

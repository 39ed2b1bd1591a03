"""Small stand-ins for ``sim_emulator.api.SimCard`` (same ``exchange`` / ``report`` surface).

* :class:`ScriptedCard` answers from a script and records every C-APDU (ME status-word table).
* :class:`FakeOtaCard` opens real 03.48 command packets with the fleet's derived keys and
  answers with a PoR, by DELIVER-REPORT (61 XX + GET RESPONSE) or, when SPI2 asks for
  SMS-SUBMIT, with status 0B + SEND SHORT MESSAGE (protocols.md §7.2).  Counter mode is
  not modelled beyond "CNTR must grow" (status 02 otherwise).
"""

from __future__ import annotations

from collections import deque

from ota_protocols.apdu.envelope import SmsPpDownload
from ota_protocols.apdu.proactive import SendShortMessage
from ota_protocols.fleet import FleetSpec, derive_card
from ota_protocols.secured_packet.command_packet import open_command_packet, parse_command_header
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.response_packet import ResponsePacket, por_keys, seal_response
from ota_protocols.sms.tpdu import SmsDeliver, SmsSubmit


class ScriptedCard:
    def __init__(self, responses: list[bytes], msisdn: str = "491700000001") -> None:
        self.responses = deque(responses)
        self.apdus: list[bytes] = []
        self.msisdn = msisdn

    def exchange(self, c_apdu: bytes) -> bytes:
        self.apdus.append(c_apdu)
        return self.responses.popleft() if self.responses else b"\x6f\x00"

    def report(self) -> dict[str, object]:
        return {"msisdn": self.msisdn, "apdus": len(self.apdus)}


class FakeOtaCard:
    def __init__(self, spec: FleetSpec, index: int, *, add_send_sm_address: bool = False) -> None:
        derived = derive_card(spec, index)
        self.iccid, self.imsi, self.msisdn = derived.iccid, derived.imsi, derived.msisdn
        self._keys = {ks.kvn: PacketKeys(kic_key=ks.kic, kid_key=ks.kid) for ks in derived.keysets}
        self._cntr: dict[int, int] = {}
        self._pending = b""
        self._proactive: bytes | None = None
        self.add_send_sm_address = add_send_sm_address
        self.actions = 0
        self.apdus: list[bytes] = []
        self.statuses: list[int] = []

    def reset(self) -> bytes:
        return b"\x3b\x00"

    def report(self) -> dict[str, object]:
        return {
            "iccid": self.iccid,
            "msisdn": self.msisdn,
            "actions": self.actions,
            "statuses": self.statuses,
        }

    def exchange(self, apdu: bytes) -> bytes:
        self.apdus.append(apdu)
        ins = apdu[1]
        if ins == 0xC2:
            return self._envelope(apdu[5 : 5 + apdu[4]])
        if ins == 0xC0:
            data, self._pending = self._pending, b""
            if self._proactive is not None:
                return data + bytes((0x91, len(self._proactive)))
            return data + b"\x90\x00"
        if ins == 0x12 and self._proactive is not None:
            data, self._proactive = self._proactive, None
            return data + b"\x90\x00"
        if ins == 0x14:
            return b"\x90\x00"
        return b"\x6d\x00"

    def _envelope(self, data: bytes) -> bytes:
        envelope = SmsPpDownload.decode(data)
        deliver = SmsDeliver.decode(envelope.tpdu)
        header, packet = deliver.split_user_data()
        assert header is not None and header.has(0x70)
        h = parse_command_header(packet)
        keys = self._keys[h.kic >> 4]
        opened = open_command_packet(h, keys)
        status = 0
        if opened.checksum_valid is False:
            status = 0x01
        elif opened.cntr <= self._cntr.get(h.kic >> 4, -1):
            status = 0x02
        else:
            self._cntr[h.kic >> 4] = opened.cntr
            self.actions += 1
        self.statuses.append(status)
        cipher, checksum = por_keys(h.spi, h.kic, h.kid, keys)
        por = seal_response(
            ResponsePacket(h.tar, opened.cntr, status, b"\x01\x90\x00" if status == 0 else b""),
            cipher,
            checksum,
        )
        if h.spi.por_via_sms_submit and status == 0:
            short = seal_response(ResponsePacket(h.tar, opened.cntr, 0x0B), cipher, checksum)
            submit = SmsSubmit(
                tp_mr=0, tp_da=deliver.tp_oa, tp_pid=0x7F, tp_dcs=0xF6, tp_ud=por, tp_udhi=True
            )
            address = b"\x91\x94\x71\x00\x00\x00" if self.add_send_sm_address else None
            self._proactive = SendShortMessage(submit.encode(), address=address).encode()
            self._pending = short
        else:
            self._pending = por
        return bytes((0x61, len(self._pending)))


class RecordingCard:
    """Wraps a real ``sim_emulator.api.SimCard`` and records the C-APDUs it gets."""

    def __init__(self, card: object) -> None:
        self.card = card
        self.apdus: list[bytes] = []
        self.resets = 0

    @property
    def msisdn(self) -> str:
        return self.card.msisdn  # type: ignore[attr-defined, no-any-return]

    def reset(self) -> bytes:
        self.resets += 1
        return self.card.reset()  # type: ignore[attr-defined, no-any-return]

    def stop_after_actions(self, k: int | None) -> None:
        self.card.stop_after_actions(k)  # type: ignore[attr-defined]

    def exchange(self, c_apdu: bytes) -> bytes:
        self.apdus.append(c_apdu)
        return self.card.exchange(c_apdu)  # type: ignore[attr-defined, no-any-return]

    def report(self) -> dict[str, object]:
        return self.card.report()  # type: ignore[attr-defined, no-any-return]

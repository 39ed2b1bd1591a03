"""A phone's SIM in a PC/SC reader, without pcscd: the ME's answer to a card that cannot be reached
(RP-ERROR D2, then reset + TERMINAL PROFILE once it is back), ``[[cards]] sim = "pcsc:..."`` in the
config, and handset.pcsc_card's mapping of pcsc-lite results to one-line errors (against a stand-in
for pyscard's ``scard`` module). The real reader path: tests/interop/test_pcsc_card_tools.py and
tests/integration/test_pcsc_campaign.py."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any, ClassVar

import pytest

from handset.config import load_config
from handset.mobile_equipment import MeOptions, MobileEquipment, MoSubmit, RetryEnvelopeAt, RpAck, RpError
from ota_protocols.errors import CardUnavailable, ConfigError
from ota_protocols.sms.tpdu import SmsDeliverReport
from tests.pcsc_daemon import scard

from .test_mobile_equipment import POR, SMSC, ota_deliver, ssm

TERMINAL_PROFILE_INS = 0x10
ENVELOPE_INS = 0xC2


class ReaderCard:
    """A card that can leave its reader: while ``present`` is False every exchange and reset raises
    CardUnavailable, as handset.pcsc_card does after pcsc-lite reports the card gone."""

    def __init__(self, responses: list[bytes]) -> None:
        self.responses = deque(responses)
        self.apdus: list[bytes] = []
        self.present = True
        self.resets = 0
        self.remove_on_ins: int | None = None  # leaves the reader while this INS is in progress

    def reset(self) -> bytes:
        if not self.present:
            raise CardUnavailable("cards[0].sim: reader 'R': no card: No smart card inserted (0x8010000c)")
        self.resets += 1
        return b"\x3b\x02\x4f\x54"

    def exchange(self, c_apdu: bytes) -> bytes:
        if self.remove_on_ins == c_apdu[1]:
            self.present = False
            self.remove_on_ins = None
        if not self.present:
            raise CardUnavailable("cards[0].sim: reader 'R': card lost on APDU: Transaction failed.")
        self.apdus.append(c_apdu)
        return self.responses.popleft() if self.responses else b"\x90\x00"


def me_for(card: ReaderCard) -> MobileEquipment:
    return MobileEquipment(card, smsc_address=SMSC, options=MeOptions(), phone_id="p1")  # type: ignore[arg-type]


def d2() -> RpError:
    # TS 23.040 §9.2.3.22: D2 "error in MS"; the RP-ERROR form of the DELIVER-REPORT carries it.
    return RpError(0xD2, SmsDeliverReport(tp_fcs=0xD2).encode())


def test_a_card_removed_during_the_envelope_gives_rp_error_d2_not_silence() -> None:
    card = ReaderCard([])
    me = me_for(card)
    card.remove_on_ins = ENVELOPE_INS
    assert me.receive_sms(ota_deliver(), 0.0) == [d2()]
    assert me.stats["card_unavailable"] == 1 and me.stats["rp_error"] == 1 and me.stats["card_torn"] == 0


def test_while_the_card_stays_away_every_download_gets_rp_error_d2() -> None:
    card = ReaderCard([])
    me = me_for(card)
    card.present = False
    assert me.receive_sms(ota_deliver(), 0.0) == [d2()]
    assert me.receive_sms(ota_deliver(), 1.0) == [d2()]
    assert card.apdus == []


def test_a_card_back_in_its_reader_is_reset_and_profiled_before_the_next_envelope() -> None:
    card = ReaderCard([])
    me = me_for(card)
    card.remove_on_ins = ENVELOPE_INS
    me.receive_sms(ota_deliver(), 0.0)
    card.present = True
    card.responses.extend([b"\x90\x00", POR + b"\x90\x00"])  # TERMINAL PROFILE, ENVELOPE
    [outcome] = me.receive_sms(ota_deliver(), 1.0)
    assert isinstance(outcome, RpAck) and outcome.report_tpdu.endswith(POR)
    assert card.resets == 1
    assert [a[1] for a in card.apdus] == [TERMINAL_PROFILE_INS, ENVELOPE_INS]
    assert me.stats["sms_received"] == 2


def test_a_card_back_with_a_power_up_message_sends_it_then_gets_the_sms_again() -> None:
    """The re-inserted card's TERMINAL PROFILE opens a proactive session (91 XX): its SEND SHORT
    MESSAGE goes first, the SMS is offered again right after (RetryEnvelopeAt now), counted once."""
    command = ssm()
    card = ReaderCard([])
    me = me_for(card)
    card.present = False
    me.receive_sms(ota_deliver(), 0.0)
    card.present = True
    card.responses.extend([bytes((0x91, len(command))), command + b"\x90\x00"])
    outcomes = me.receive_sms(ota_deliver(), 5.0)
    assert isinstance(outcomes[0], MoSubmit) and outcomes[1] == RetryEnvelopeAt(5.0, 1)
    assert me.mo_sent() == []
    card.responses.append(POR + b"\x90\x00")
    [ack] = me.receive_sms(ota_deliver(), 5.0, attempt=1)
    assert isinstance(ack, RpAck) and me.stats["sms_received"] == 2


def test_a_card_removed_before_its_terminal_response_leaves_the_phone_usable() -> None:
    command = ssm()
    card = ReaderCard([POR + bytes((0x91, len(command))), command + b"\x90\x00"])
    me = me_for(card)
    outcomes = me.receive_sms(ota_deliver(), 0.0)
    assert isinstance(outcomes[1], MoSubmit)
    card.present = False
    assert me.mo_sent() == []
    assert not me.awaiting_terminal_response
    card.present = True
    card.responses.extend([b"\x90\x00", POR + b"\x90\x00"])
    [ack] = me.receive_sms(ota_deliver(), 1.0)
    assert isinstance(ack, RpAck)


def test_a_menu_selection_without_the_card_does_nothing_and_raises_nothing() -> None:
    card = ReaderCard([])
    me = me_for(card)
    card.present = False
    assert me.menu_selection(1) == []
    card.present = True
    assert me.menu_selection(1) == []
    assert [a[1] for a in card.apdus] == [TERMINAL_PROFILE_INS, ENVELOPE_INS]


# ---------------------------------------------------------------------------- config


def write(tmp_path: Path, cards: str) -> Path:
    path = tmp_path / "h.toml"
    path.write_text(f"[smsc]\nport = 0\n\n[[cards]]\n{cards}\n")
    return path


@pytest.mark.parametrize(
    ("cards", "key_path", "detail"),
    [
        ('sim = "pcsc:Virtual PCD 00 00"', "cards[0].msisdn", "required with sim"),
        ('sim = "pcsc:"\nmsisdn = "491700000001"', "cards[0].sim", "expected 'pcsc:READER NAME'"),
        ('sim = "usb:x"\nmsisdn = "491700000001"', "cards[0].sim", "expected 'pcsc:READER NAME'"),
        ('sim = "pcsc:R"\nmsisdn = "49-17"', "cards[0].msisdn", "expected 3 to 15 digits"),
        ('sim = "pcsc:R"\nmsisdn = "4917"\nprofile = "c.toml"', "cards[0].profile", "exactly one of"),
        ('sim = "pcsc:R"\nmsisdn = "4917"\nstate = "s.json"', "cards[0].state", "only with profile"),
        ('profile = "c.toml"\nmsisdn = "4917"', "cards[0].msisdn", "only with sim"),
        ('state = "s.json"', "cards[0].profile", "exactly one of"),
    ],
)
def test_bad_cards_entries_name_the_key(tmp_path: Path, cards: str, key_path: str, detail: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, cards))
    assert caught.value.key_path == key_path and detail in caught.value.detail


def test_a_pcsc_entry_gives_the_reader_and_the_msisdn(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'sim = "pcsc:Virtual PCD 00 00"\nmsisdn = "491700000001"'))
    [entry] = config.cards
    assert (entry.reader, entry.msisdn, entry.profile) == ("Virtual PCD 00 00", "491700000001", None)


# ---------------------------------------------------------------------------- PcscCard vs pcsc-lite results


class FakeScard:
    """The part of ``smartcard.scard`` handset.pcsc_card uses (pyscard's names), with scripted results."""

    SCARD_S_SUCCESS = 0
    SCARD_E_NO_SERVICE = 0x8010001D
    SCARD_E_NO_READERS_AVAILABLE = 0x8010002E
    SCARD_E_NO_SMARTCARD = 0x8010000C
    SCARD_W_REMOVED_CARD = 0x80100069
    SCARD_E_SHARING_VIOLATION = 0x8010000B
    SCARD_E_NOT_TRANSACTED = 0x80100016
    SCARD_SCOPE_USER = 0
    SCARD_SHARE_EXCLUSIVE = 1
    SCARD_PROTOCOL_T0 = 1
    SCARD_PCI_T0 = 1
    SCARD_LEAVE_CARD = 0
    SCARD_RESET_CARD = 1
    MESSAGES: ClassVar[dict[int, str]] = {
        0x8010001D: "Service not available.",
        0x8010000C: "No smart card inserted.",
        0x80100016: "Transaction failed.",
        0x80100069: "Card was removed.",
        0x8010000B: "Sharing violation.",
    }

    def __init__(self) -> None:
        self.context_result = 0
        self.readers = ["Virtual PCD 00 00", "Virtual PCD 00 01"]
        self.connect_results: deque[int] = deque()
        self.transmit_results: deque[tuple[int, list[int]]] = deque()
        self.reconnect_result = 0
        self.calls: list[str] = []

    def SCardGetErrorMessage(self, code: int) -> str:
        return self.MESSAGES.get(code, "Unknown error.")

    def SCardEstablishContext(self, scope: int) -> tuple[int, Any]:
        return self.context_result, "ctx"

    def SCardReleaseContext(self, context: Any) -> int:
        return 0

    def SCardListReaders(self, context: Any, groups: list[str]) -> tuple[int, list[str]]:
        return (0, self.readers) if self.readers else (self.SCARD_E_NO_READERS_AVAILABLE, [])

    def SCardConnect(self, context: Any, reader: str, share: int, protocol: int) -> tuple[int, Any, int]:
        self.calls.append("connect")
        rv = self.connect_results.popleft() if self.connect_results else 0
        return rv, ("handle" if rv == 0 else None), 1

    def SCardStatus(self, handle: Any) -> tuple[int, str, int, int, list[int]]:
        return 0, "Virtual PCD 00 00", 0, 1, [0x3B, 0x02, 0x4F, 0x54]

    def SCardReconnect(self, handle: Any, share: int, protocol: int, init: int) -> tuple[int, int]:
        self.calls.append("reconnect")
        return self.reconnect_result, 1

    def SCardDisconnect(self, handle: Any, disposition: int) -> int:
        self.calls.append("disconnect")
        return 0

    def SCardTransmit(self, handle: Any, pci: int, apdu: list[int]) -> tuple[int, list[int]]:
        self.calls.append(bytes(apdu[:2]).hex())
        return self.transmit_results.popleft() if self.transmit_results else (0, [0x90, 0x00])


@pytest.fixture
def fake_scard(monkeypatch: pytest.MonkeyPatch) -> FakeScard:
    scard()  # handset.pcsc_card imports pyscard: missing, this fails under CI and skips elsewhere
    import handset.pcsc_card as module

    fake = FakeScard()
    monkeypatch.setattr(module, "scard", fake)
    return fake


def iccid_answers() -> list[tuple[int, list[int]]]:
    ef = list(bytes.fromhex("988812010000000010f1"))
    return [
        (0, [0x61, 0x0D]),
        (0, [0x90, 0x00]),
        (0, [0x61, 0x11]),
        (0, [0x90, 0x00]),
        (0, [*ef, 0x90, 0x00]),
    ]


def test_open_reads_the_atr_and_ef_iccid(fake_scard: FakeScard) -> None:
    from handset.pcsc_card import PcscCard

    fake_scard.transmit_results.extend(iccid_answers())
    card = PcscCard("Virtual PCD 00 00", "491700000001", where="cards[0].sim")
    card.open()
    assert (card.atr, card.iccid) == (bytes.fromhex("3b024f54"), "8988211000000000011")
    assert card.report()["iccid"] == "8988211000000000011" and card.report()["apdus"] == 5


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            lambda f: setattr(f, "context_result", FakeScard.SCARD_E_NO_SERVICE),
            "cards[0].sim: reader 'Virtual PCD 00 00': no PC/SC service: Service not available "
            "(0x8010001d) (is pcscd running?)",
        ),
        (
            lambda f: setattr(f, "readers", ["Other 00 00"]),
            "cards[0].sim: reader 'Virtual PCD 00 00': no such reader: readers: 'Other 00 00'",
        ),
        (
            lambda f: setattr(f, "readers", []),
            "cards[0].sim: reader 'Virtual PCD 00 00': no such reader: readers: none",
        ),
        (
            lambda f: f.connect_results.append(FakeScard.SCARD_E_NO_SMARTCARD),
            "cards[0].sim: reader 'Virtual PCD 00 00': no card: No smart card inserted (0x8010000c)",
        ),
        (
            lambda f: f.connect_results.append(FakeScard.SCARD_E_SHARING_VIOLATION),
            "cards[0].sim: reader 'Virtual PCD 00 00': card in use by another application: "
            "Sharing violation (0x8010000b)",
        ),
    ],
)
def test_open_failures_are_one_line_naming_key_reader_and_cause(
    fake_scard: FakeScard, setup: Any, message: str
) -> None:
    from handset.pcsc_card import PcscCard

    setup(fake_scard)
    with pytest.raises(CardUnavailable) as caught:
        PcscCard("Virtual PCD 00 00", "491700000001", where="cards[0].sim").open()
    assert str(caught.value) == message


def test_a_card_lost_mid_apdu_drops_the_handle_until_reset_reconnects(fake_scard: FakeScard) -> None:
    from handset.pcsc_card import PcscCard

    fake_scard.transmit_results.extend(iccid_answers())
    card = PcscCard("Virtual PCD 00 00", "491700000001", where="cards[0].sim")
    card.open()
    fake_scard.transmit_results.append((FakeScard.SCARD_E_NOT_TRANSACTED, []))
    with pytest.raises(
        CardUnavailable, match=r"card lost on APDU 80c2000010: Transaction failed \(0x80100016\)"
    ):
        card.exchange(bytes.fromhex("80c2000010") + bytes(16))
    with pytest.raises(CardUnavailable, match="no card connected"):
        card.exchange(bytes.fromhex("80100000"))
    fake_scard.calls.clear()
    assert card.reset() == bytes.fromhex("3b024f54")
    assert fake_scard.calls == ["connect"]  # the old handle is gone: a new connection, not a reconnect
    assert card.exchange(bytes.fromhex("80100000")) == b"\x90\x00"
    assert card.report()["pcsc_failures"] == 1


def test_reset_is_a_warm_reset_of_the_same_handle_and_falls_back_to_connecting(fake_scard: FakeScard) -> None:
    from handset.pcsc_card import PcscCard

    fake_scard.transmit_results.extend(iccid_answers())
    card = PcscCard("Virtual PCD 00 00", "491700000001", where="cards[0].sim")
    card.open()
    fake_scard.calls.clear()
    card.reset()
    assert fake_scard.calls == ["reconnect"]
    fake_scard.calls.clear()
    fake_scard.reconnect_result = FakeScard.SCARD_W_REMOVED_CARD
    fake_scard.connect_results.append(FakeScard.SCARD_E_NO_SMARTCARD)
    with pytest.raises(CardUnavailable, match="no card"):
        card.reset()
    assert fake_scard.calls == ["reconnect", "disconnect", "connect"]


def test_an_answer_without_a_status_word_is_a_card_gone_mid_apdu(fake_scard: FakeScard) -> None:
    """vpcd 3.3 reports success with no data when its card's connection closes mid-APDU."""
    from handset.pcsc_card import PcscCard

    fake_scard.transmit_results.extend(iccid_answers())
    card = PcscCard("Virtual PCD 00 00", "491700000001", where="cards[0].sim")
    card.open()
    fake_scard.transmit_results.append((0, []))
    with pytest.raises(CardUnavailable, match="0-octet answer without a status word"):
        card.exchange(bytes.fromhex("80c2000010") + bytes(16))
    with pytest.raises(CardUnavailable, match="no card connected"):
        card.exchange(bytes.fromhex("80100000"))

"""The APDU dispatcher: file commands, T=0 GET RESPONSE, CAT housekeeping, totality."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ota_protocols.apdu.apdu import ResponseApdu
from sim_emulator.api import card_from_fleet
from sim_emulator.profile import CardOptions
from tests.sim_emulator.ota_kit import SPEC, TEMPLATE, apdu, new_card, transmit


def _sw(r: bytes) -> int:
    return int.from_bytes(r[-2:], "big")


def test_select_answers_61_then_get_response_gives_the_fcp() -> None:
    card = new_card(0)
    r = card.exchange(apdu("00A40004023F00"))
    assert r[0] == 0x61
    fcp = card.exchange(apdu("00C00000") + r[1:2])
    assert fcp[0] == 0x62 and _sw(fcp) == 0x9000 and len(fcp) - 2 == r[1]
    assert _sw(card.exchange(apdu("00C0000010"))) == 0x6985  # nothing pending any more


def test_t0_get_response_option_off_returns_data_directly() -> None:
    template = dataclasses.replace(TEMPLATE, options=CardOptions(t0_get_response=False))
    card = card_from_fleet(SPEC, 0, template)
    r = card.exchange(apdu("00A40004023F00"))
    assert r[0] == 0x62 and _sw(r) == 0x9000


def test_read_iccid_and_imsi() -> None:
    card = new_card(5)
    assert transmit(card, apdu("00A4000C022FE2")).sw == 0x9000
    iccid = transmit(card, apdu("00B000000A")).data
    assert "".join(f"{b & 0xF:x}{b >> 4:x}" for b in iccid).rstrip("f") == card.iccid
    for c in ("00A4000C027F20", "00A4000C026F07"):
        transmit(card, apdu(c))
    assert transmit(card, apdu("00B0000009")).data[0] == 8
    assert _sw(card.exchange(apdu("00D6000001 00"))) == 0x9000  # EF.IMSI is writable
    transmit(card, apdu("00A4000C022FE2"))
    assert _sw(card.exchange(apdu("00D6000001 00"))) == 0x6982  # EF.ICCID is not


@pytest.mark.parametrize(
    ("commands", "sw"),
    [
        (["00A4000C026F99"], 0x6A82),
        (["00B0000001"], 0x6986),
        (["00A4000C027F10", "00A4000C026F3A", "00B0000001"], 0x6981),
        (["00A4000C027F20", "00A4000C026F46", "00B0001201"], 0x6B00),
        (["00A4000C027F20", "00A4000C026F46", "00B0000020"], 0x6700),
        (["00A4000C027F10", "00A4000C026F3A", "00B20B041E"], 0x6A83),
        (["00A4000C027F10", "00A4000C026F3A", "00B2010410"], 0x6700),
        (["00A4000C027F10", "00A4000C026F3A", "00DC010402 0102"], 0x6700),
        (["00A4000C027F20", "00A4000C026F46", "00DC010401 01"], 0x6981),
        (["00A4000C0100"], 0x6700),
        (["00A4030C023F00"], 0x6A86),
        (["00A40004"], 0x6700),
        (["00A4000C023F00AA"], 0x9000),  # a trailing Le octet is tolerated
        (["00A4000C023F00AABB"], 0x6700),
        (["00B0"], 0x6700),
        (["0077000000"], 0x6D00),
        (["4CA4000C023F00"], 0x6E00),
        (["8012000010"], 0x6985),
        (["80140000 0C 810301130082028281830100"], 0x6985),
    ],
)
def test_status_words(commands: list[str], sw: int) -> None:
    card = new_card(0)
    for c in commands[:-1]:
        assert transmit(card, apdu(c)).sw == 0x9000
    assert _sw(card.exchange(apdu(commands[-1]))) == sw


def test_records_absolute_next_previous() -> None:
    card = new_card(0)
    for c in ("00A4000C027F10", "00A4000C026F40"):
        transmit(card, apdu(c))
    assert _sw(card.exchange(apdu("00DC0104 1C" + "11" * 28))) == 0x9000
    assert _sw(card.exchange(apdu("00DC0002 1C" + "22" * 28))) == 0x9000  # next: record 2
    assert transmit(card, apdu("00B2000300")).data == b"\x11" * 28  # previous: record 1
    assert _sw(card.exchange(apdu("00B2000300"))) == 0x6A83


def test_select_relative_to_parent_and_by_path() -> None:
    card = new_card(0)
    for c in (
        "00A4000C027F20",
        "00A4000C027F10",
        "00A4000C026F3A",
        "00A4000C027F20",
        "00A4000C023F00",
        "00A4080C047F206F46",
        "00A4090C026F07",
    ):
        assert transmit(card, apdu(c)).sw == 0x9000, c
    assert _sw(card.exchange(apdu("00A4080C047F996F46"))) == 0x6A82


def test_status_and_terminal_profile() -> None:
    card = new_card(0)
    r = card.exchange(apdu("80F2000000"))
    assert r[0] == 0x62 and _sw(r) == 0x9000
    assert card.exchange(apdu("80100000 04 FFFFFFFF")) == b"\x90\x00"


def test_reset_drops_volatile_state() -> None:
    card = new_card(0)
    card.exchange(apdu("00A40004023F00"))
    assert card.reset()[0] == 0x3B
    assert _sw(card.exchange(apdu("00C000000F"))) == 0x6985


def test_non_ota_envelopes_are_accepted_quietly() -> None:
    from ota_protocols.apdu.envelope import SmsPpDownload
    from tests.sim_emulator.ota_kit import sms_deliver

    card = new_card(0)
    plain = SmsPpDownload(sms_deliver(b"hello", udhi=False)).to_apdu().encode_t0()
    assert card.exchange(plain) == b"\x90\x00"
    no_cpi = SmsPpDownload(sms_deliver(b"\x02\x71\x00hello")).to_apdu().encode_t0()
    assert card.exchange(no_cpi) == b"\x90\x00"
    assert card.exchange(apdu("80C20000 04 D6020102")) == b"\x90\x00"  # another envelope tag
    assert _sw(card.exchange(apdu("80C20000 03 D10182"))) == 0x6A80


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_exchange_is_total_on_arbitrary_bytes(data: bytes) -> None:
    card = new_card(0)
    r = card.exchange(data)
    assert len(r) >= 2
    ResponseApdu.decode(r)


_HEADERS = st.sampled_from(
    [
        bytes.fromhex(h)
        for h in (
            "00A4",
            "00B0",
            "00D6",
            "00B2",
            "00DC",
            "80F2",
            "00C0",
            "8010",
            "80C2",
            "8012",
            "8014",
            "A0A4",
            "A0C2",
        )
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_HEADERS, st.binary(min_size=0, max_size=260)), max_size=8))
def test_exchange_is_total_on_plausible_sequences(commands: list[tuple[bytes, bytes]]) -> None:
    card = new_card(0)
    for header, rest in commands:
        r = card.exchange(header + rest)
        assert len(r) >= 2

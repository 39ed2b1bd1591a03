"""The action-counter block (docs/action-counter.md) and deterministic fleets."""

from __future__ import annotations

import contextlib
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ota_protocols.action_counter import (
    CounterReport,
    append_counter_report,
    is_counted,
    missing_actions,
    split_counter_report,
)
from ota_protocols.errors import DecodeError
from ota_protocols.fleet import FleetSpec, KeysetTemplate, derive_card, index_of_msisdn, luhn_digit


def test_counter_block_layout() -> None:
    data = append_counter_report(bytes.fromhex("059000"), CounterReport(7, 12))
    assert data.hex() == "059000" + "ac08" + "00000007" + "0000000c"
    assert split_counter_report(data) == (bytes.fromhex("059000"), CounterReport(7, 12))


@given(st.binary(max_size=60), st.integers(0, 0xFFFFFFFF), st.integers(0, 300))
def test_counter_block_round_trip(standard: bytes, before: int, executed: int) -> None:
    report = CounterReport(before, min(before + executed, 0xFFFFFFFF))
    assert split_counter_report(append_counter_report(standard, report)) == (standard, report)


@given(st.binary(max_size=40))
def test_counter_block_decoder_is_total(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        split_counter_report(data)


@pytest.mark.parametrize(
    ("stored", "sent", "reported", "missing"), [(10, 5, 15, 0), (10, 5, 12, 3), (10, 5, 10, 5), (0, 1, 0, 1)]
)
def test_claim_1c_last_x_actions_did_not_run(stored: int, sent: int, reported: int, missing: int) -> None:
    assert missing_actions(stored, sent, reported) == missing


@pytest.mark.parametrize(("stored", "sent", "reported"), [(10, 5, 16), (10, 5, 9)])
def test_a_report_outside_the_script_is_a_mismatch(stored: int, sent: int, reported: int) -> None:
    with pytest.raises(DecodeError):
        missing_actions(stored, sent, reported)


def test_navigation_is_not_counted() -> None:
    assert not is_counted(0xA4) and not is_counted(0xB0) and not is_counted(0xC0)
    assert is_counted(0xD6) and is_counted(0xDC) and is_counted(0xE6) and is_counted(0xE8)


def test_fleet_is_deterministic_and_well_formed() -> None:
    spec = FleetSpec(seed="lab", count=1000, first_index=5)
    card = derive_card(spec, 42)
    assert card == derive_card(spec, 42)
    assert len(card.iccid) == 19 and card.iccid[-1] == luhn_digit(card.iccid[:-1])
    assert len(card.imsi) == 15 and card.msisdn == "491700000042"
    assert index_of_msisdn(spec, card.msisdn) == 42
    assert index_of_msisdn(spec, "491700000004") is None  # below first_index
    assert index_of_msisdn(spec, "491700001004") == 1004  # the last card
    assert index_of_msisdn(spec, "491700001005") is None  # past the last card
    other = derive_card(FleetSpec(seed="other", count=1000, first_index=5), 42)
    assert other.keysets[0].kic != card.keysets[0].kic
    assert card.keysets[0].kic != card.keysets[0].kid
    assert "kic=" not in repr(card)  # keys never in repr


def test_luhn_digit_known_value() -> None:
    # ICCID 8988211000000467285 quoted in pySim's tests ends with its Luhn digit 5.
    assert luhn_digit("898821100000046728") == "5"


def _reference_key(seed: str, iccid: str, kvn: int, role: str, length: int) -> bytes:
    """The module docstring's definition, with the standard library's HMAC."""
    digest = hmac.new(seed.encode(), f"{iccid}|{kvn}|{role}".encode(), hashlib.sha256).digest()
    while len(digest) < length:
        digest += hmac.new(seed.encode(), digest, hashlib.sha256).digest()
    return digest[:length]


@settings(max_examples=60)
@given(
    seed=st.text(max_size=100),  # past 64 octets too: RFC 2104 hashes such keys first
    index=st.integers(0, 99_999),
    length=st.sampled_from([8, 16, 24, 32, 40]),
)
def test_derived_keys_are_hmac_sha256_of_iccid_kvn_role(seed: str, index: int, length: int) -> None:
    keysets = (KeysetTemplate(kvn=3, kic_algorithm="aes", kid_algorithm="aes-cmac", key_length=length),)
    card = derive_card(FleetSpec(seed=seed, count=100_000, keysets=keysets), index)
    (keyset,) = card.keysets
    assert (keyset.kic, keyset.kid, keyset.kik) == tuple(
        _reference_key(seed, card.iccid, 3, role, length) for role in ("kic", "kid", "kik")
    )


def _reference_luhn(digits: str) -> str:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


@given(st.text(alphabet="0123456789", max_size=25))
def test_luhn_digit_matches_the_digit_by_digit_sum(digits: str) -> None:
    assert luhn_digit(digits) == _reference_luhn(digits)


def test_card_message_layout_and_round_trip() -> None:
    from ota_protocols.action_counter import CardMessage, CardMessageKind

    message = CardMessage(CardMessageKind.TRANSACTION_REQUEST, 7, 12, b"\x00\x00\x01\xf4")
    assert message.encode().hex() == "e11580010181040000000782040000000c8304000001f4"
    assert CardMessage.decode(message.encode()) == message
    info = CardMessage(CardMessageKind.INFORMATION, 1, 0)
    assert CardMessage.decode(info.encode()) == info


@given(st.binary(max_size=40))
def test_card_message_decoder_is_total(data: bytes) -> None:
    from ota_protocols.action_counter import CardMessage

    with contextlib.suppress(DecodeError):
        CardMessage.decode(data)


def test_transaction_reply_is_not_counted() -> None:
    from ota_protocols.apdu.card_commands import transaction_reply

    reply = transaction_reply(7, accepted=True)
    assert reply.encode_t0().hex() == "803601000400000007"
    assert not is_counted(reply.ins)

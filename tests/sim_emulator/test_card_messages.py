"""Card-originated messages (patent WO 00/07153 claims 7-9, docs/action-counter.md "Deferred reports"):
the purse's transaction request on MENU SELECTION, the information message on power-up, the
TRANSACTION REPLY that starts the server's answer, and tearing around them. Opened with the SHARED
decoder and keys only."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from ota_protocols.action_counter import CardMessage, CardMessageKind, split_counter_report
from ota_protocols.apdu import card_commands as cc
from ota_protocols.apdu.apdu import CommandApdu
from ota_protocols.apdu.proactive import DeviceIdentities, DeviceIdentity
from ota_protocols.apdu.remote_commands import CompactResponse
from ota_protocols.errors import ConfigError
from ota_protocols.secured_packet.command_packet import OpenedCommand, decode_command_packet
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.response_packet import ResponseStatus
from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm
from ota_protocols.sms.tpdu import SmsSubmit
from ota_protocols.tlv import BerTag, ComprehensionTag, encode_ber, encode_comprehension
from sim_emulator.api import CardPoweredOff, SimCard, card_from_fleet, load_card, load_card_template
from sim_emulator.card_state_store import MemoryCardStateStore
from tests.sim_emulator.ota_kit import (
    EXAMPLE_CARD,
    SPEC,
    TAR_PURSE,
    TEMPLATE,
    TEMPLATE_PATH,
    apdu,
    decode_por,
    fetch_sms_submits,
    fleet_keys,
    new_card,
    send_script,
)

EXAMPLE_KEYS = PacketKeys(
    kic_key=bytes.fromhex("000102030405060708090a0b0c0d0e0f"),
    kid_key=bytes.fromhex("101112131415161718191a1b1c1d1e1f"),
    kic_implicit=CipherAlgorithm.AES_CBC,
    kid_implicit=IntegrityAlgorithm.AES_CMAC,
)
INFO_TEMPLATE = dataclasses.replace(
    TEMPLATE, options=dataclasses.replace(TEMPLATE.options, info_message_on_power_up=True)
)
TERMINAL_PROFILE = apdu("8010000014" + "ff" * 20)


def menu_selection(item: int = 1, source: int = DeviceIdentity.KEYPAD) -> bytes:
    """ENVELOPE (MENU SELECTION), TS 102 223 §7.3, built with the shared TLV codec."""
    body = DeviceIdentities(source, DeviceIdentity.UICC).encode()
    body += encode_comprehension(ComprehensionTag.ITEM_IDENTIFIER, bytes((item,)), True)
    return CommandApdu(0x80, 0xC2, 0x00, 0x00, encode_ber(BerTag.MENU_SELECTION, body)).encode_t0()


def open_mo(submit: SmsSubmit, keys: PacketKeys) -> tuple[OpenedCommand, CardMessage]:
    assert submit.tp_udhi and submit.tp_pid == 0x7F and submit.tp_dcs == 0xF6
    assert submit.tp_ud[:3] == bytes.fromhex("027000")
    opened = decode_command_packet(submit.tp_ud[3:], keys)
    assert opened.checksum_valid is True
    return opened, CardMessage.decode(opened.data)


def pay(card: SimCard) -> list[SmsSubmit]:
    r = card.exchange(menu_selection(1))
    return fetch_sms_submits(card, int.from_bytes(r[-2:], "big"))


def purse_report(card: SimCard) -> dict[str, object]:
    return next(a for a in card.report()["applications"] if a["tar"] == TAR_PURSE.hex())


def test_pay_sends_a_secured_transaction_request_the_shared_decoder_opens() -> None:
    card = new_card(0)
    r = card.exchange(menu_selection(1))
    assert r[0] == 0x91 and len(r) == 2
    (submit,) = fetch_sms_submits(card, int.from_bytes(r, "big"))
    assert submit.tp_da.digits == "12345"
    opened, message = open_mo(submit, fleet_keys(0))
    header = opened.header
    assert header.spi.to_bytes() == bytes.fromhex("1600")  # cipher + CC + counter higher, no PoR
    assert (header.kic, header.kid, header.tar) == (0x12, 0x12, TAR_PURSE)  # explicit AES codings, key set 1
    assert opened.cntr == 1
    assert message == CardMessage(CardMessageKind.TRANSACTION_REQUEST, 1, 0, (100).to_bytes(4, "big"))
    report = purse_report(card)
    assert report["balance"] == 900 and report["mo_cntr"] == 1 and report["request_sequence"] == 1
    assert report["action_counter"] == 0  # the card's own payment is not a server action


def test_cntr_and_sequence_grow_per_message_and_carry_the_current_counter() -> None:
    card = new_card(0)
    pay(card)
    assert send_script(card, apdu("8030000004 00000005"), 1, tar=TAR_PURSE).sw == 0x9000  # one counted action
    (submit,) = pay(card)
    opened, message = open_mo(submit, fleet_keys(0))
    assert opened.cntr == 2 and message.sequence == 2 and message.counter == 1
    assert purse_report(card)["balance"] == 1000 - 100 + 5 - 100


def test_balance_too_low_is_refused_locally_without_message() -> None:
    card = new_card(0)  # balance 1000, payment 100
    for _ in range(10):
        assert len(pay(card)) == 1
    assert card.exchange(menu_selection(1)) == b"\x90\x00"
    report = purse_report(card)
    assert report["balance"] == 0 and report["mo_cntr"] == 10 and report["request_sequence"] == 10


def test_other_items_and_malformed_menu_selections() -> None:
    card = new_card(0)
    assert card.exchange(menu_selection(2)) == b"\x90\x00"
    assert card.exchange(menu_selection(1, source=DeviceIdentity.NETWORK)) == b"\x6a\x80"
    assert card.exchange(apdu("80C2000003D30100")) == b"\x6a\x80"
    assert purse_report(card)["mo_cntr"] == 0


def test_mo_cntr_survives_a_file_store_restart(tmp_path: Path) -> None:
    profile = tmp_path / "card.toml"
    shutil.copy(EXAMPLE_CARD, profile)
    card = load_card(profile)
    card.reset()
    (first,) = pay(card)
    del card
    restarted = load_card(profile)
    restarted.reset()
    assert purse_report(restarted)["mo_cntr"] == 1
    (second,) = pay(restarted)
    assert open_mo(first, EXAMPLE_KEYS)[0].cntr == 1
    opened, message = open_mo(second, EXAMPLE_KEYS)
    assert opened.cntr == 2 and message.sequence == 2
    assert purse_report(restarted)["balance"] == 800


def test_information_message_on_power_up() -> None:
    card = card_from_fleet(SPEC, 3, INFO_TEMPLATE)
    card.reset()
    r = card.exchange(TERMINAL_PROFILE)
    assert r[0] == 0x91
    (submit,) = fetch_sms_submits(card, int.from_bytes(r, "big"))
    opened, message = open_mo(submit, fleet_keys(3))
    assert message == CardMessage(CardMessageKind.INFORMATION, 0, 0)
    assert opened.cntr == 1
    # Only the first TERMINAL PROFILE after a reset; the next reset reports again.
    assert card.exchange(TERMINAL_PROFILE) == b"\x90\x00"
    card.reset()
    r = card.exchange(TERMINAL_PROFILE)
    (again,) = fetch_sms_submits(card, int.from_bytes(r, "big"))
    assert open_mo(again, fleet_keys(3))[0].cntr == 2


def test_no_information_message_by_default() -> None:
    card = new_card(0)
    assert card.exchange(TERMINAL_PROFILE) == b"\x90\x00"


def test_torn_card_reports_its_counter_on_power_up() -> None:
    store = MemoryCardStateStore()
    identity = card_from_fleet(SPEC, 0, INFO_TEMPLATE)._uicc.identity
    card = SimCard(INFO_TEMPLATE, identity, store)
    card.reset()
    r = card.exchange(TERMINAL_PROFILE)
    assert len(fetch_sms_submits(card, int.from_bytes(r, "big"))) == 1  # the power-up report, counter 0
    script = b"".join(apdu(f"8030000004{n:08x}") for n in (1, 2, 4))
    card.stop_after_actions(2)
    with pytest.raises(CardPoweredOff):
        send_script(card, script, 1, tar=TAR_PURSE)
    card.reset()
    r = card.exchange(TERMINAL_PROFILE)
    (submit,) = fetch_sms_submits(card, int.from_bytes(r, "big"))
    _opened, message = open_mo(submit, fleet_keys(0))
    assert message.kind is CardMessageKind.INFORMATION and message.counter == 2


def test_transaction_reply_then_missing_actions_counts_only_the_actions() -> None:
    store = MemoryCardStateStore()
    identity = card_from_fleet(SPEC, 0, TEMPLATE)._uicc.identity
    card = SimCard(TEMPLATE, identity, store)
    card.reset()
    pay(card)
    script = b"".join(
        c.encode_t0() for c in (cc.transaction_reply(1, True), cc.purse_reload(7), cc.purse_reload(8))
    )
    answer = send_script(card, script, 1, tar=TAR_PURSE)
    por = decode_por(answer.data)
    assert por.status == ResponseStatus.POR_OK
    standard, counter = split_counter_report(por.data)
    assert CompactResponse.decode(standard) == CompactResponse(3, 0x9000)
    assert (counter.before, counter.after) == (0, 2)
    report = purse_report(card)
    assert report["replies"] == [{"sequence": 1, "accepted": True}]
    assert report["balance"] == 900 + 15
    assert [j["apdu"][:4] for j in report["journal"]] == ["8030", "8030"]
    saved = store.load()
    assert saved is not None and [r.sequence for r in saved.applications[TAR_PURSE].replies] == [1]


def test_transaction_reply_refused_and_unknown_sequence() -> None:
    card = new_card(0)
    pay(card)
    refused = cc.transaction_reply(1, False).encode_t0()
    assert send_script(card, refused, 1, tar=TAR_PURSE).sw == 0x9000
    unknown = cc.transaction_reply(2, True).encode_t0() + cc.purse_reload(7).encode_t0()
    por = decode_por(send_script(card, unknown, 2, tar=TAR_PURSE).data)
    standard, counter = split_counter_report(por.data)
    assert CompactResponse.decode(standard) == CompactResponse(1, 0x6A88)  # stops: the action is refused
    assert counter.executed == 0
    report = purse_report(card)
    assert report["replies"] == [{"sequence": 1, "accepted": False}] and report["balance"] == 900


@pytest.mark.parametrize("k", [0, 1, 2])
def test_tearing_in_a_reply_script_keeps_the_reply_and_done_actions(k: int) -> None:
    store = MemoryCardStateStore()
    identity = card_from_fleet(SPEC, 0, TEMPLATE)._uicc.identity
    card = SimCard(TEMPLATE, identity, store)
    card.reset()
    pay(card)
    commands = (cc.transaction_reply(1, True), cc.purse_reload(1), cc.purse_reload(2), cc.purse_reload(4))
    script = b"".join(c.encode_t0() for c in commands)
    card.stop_after_actions(k)
    with pytest.raises(CardPoweredOff):
        send_script(card, script, 1, tar=TAR_PURSE)
    rebooted = SimCard(TEMPLATE, identity, store)  # what a reboot finds
    report = purse_report(rebooted)
    assert report["action_counter"] == k and report["balance"] == 900 + [0, 1, 3][k]
    assert report["replies"] == ([] if k == 0 else [{"sequence": 1, "accepted": True}])
    card.reset()
    assert card.report() == rebooted.report()
    # No PoR was sent; a replay of the same packet is refused CNTR low and runs nothing.
    assert decode_por(send_script(card, script, 1, tar=TAR_PURSE).data).status == ResponseStatus.CNTR_LOW
    assert purse_report(card)["action_counter"] == k
    # The card works after the reset: a fresh CNTR runs the missing actions.
    rest = b"".join(c.encode_t0() for c in commands[1 + k :])
    assert send_script(card, rest, 2, tar=TAR_PURSE).sw == 0x9000
    assert purse_report(card)["action_counter"] == 3 and purse_report(card)["balance"] == 907


def test_template_options_for_card_messages(tmp_path: Path) -> None:
    text = TEMPLATE_PATH.read_text()
    path = tmp_path / "t.toml"
    path.write_text(
        text.replace("balance_modulo = 50", "balance_modulo = 50\npayment_amount = 250")
        + '\nota_platform_address = "777"\ninfo_message_on_power_up = true\n'
    )
    template = load_card_template(path)
    assert template.options.ota_platform_address == "777" and template.options.info_message_on_power_up
    card = card_from_fleet(SPEC, 0, template)
    card.reset()
    r = card.exchange(TERMINAL_PROFILE)
    (info,) = fetch_sms_submits(card, int.from_bytes(r, "big"))
    assert info.tp_da.digits == "777"
    r = card.exchange(menu_selection(1))
    (submit,) = fetch_sms_submits(card, int.from_bytes(r[-2:], "big"))
    assert submit.tp_da.digits == "777"
    assert open_mo(submit, fleet_keys(0))[1].payload == (250).to_bytes(4, "big")
    path.write_text(text + '\nota_platform_address = "12a"\n')
    with pytest.raises(ConfigError, match="ota_platform_address"):
        load_card_template(path)

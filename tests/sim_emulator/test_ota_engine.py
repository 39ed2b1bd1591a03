"""The OTA engine end to end through the public card API: ENVELOPE in, PoR out."""

from __future__ import annotations

import dataclasses

import pytest

from ota_protocols.action_counter import split_counter_report
from ota_protocols.apdu import card_commands as cc
from ota_protocols.apdu.apdu import CommandApdu
from ota_protocols.apdu.remote_commands import CompactResponse, ExpandedCommandScript, ExpandedResponse
from ota_protocols.secured_packet.command_packet import command_user_data
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.response_packet import ResponseStatus, decode_response_packet
from ota_protocols.secured_packet.security_parameters import Spi
from ota_protocols.sms.concatenation import Reassembler
from sim_emulator.api import card_from_fleet
from sim_emulator.profile import ScriptFormat
from tests.sim_emulator.ota_kit import (
    SPEC,
    SPI_DEFAULT,
    TAR_PURSE,
    TAR_RAM,
    TDES_KIC,
    TEMPLATE,
    apdu,
    command_packet,
    concatenated_envelopes,
    decode_por,
    envelope,
    fetch_sms_submits,
    fleet_keys,
    new_card,
    send_script,
    transmit,
)

UPDATE_SPN = apdu("00A4000C027F20 00A4000C026F46 00D6000003414243")


def _read_spn(card) -> bytes:  # type: ignore[no-untyped-def]
    for c in ("00A4000C027F20", "00A4000C026F46"):
        assert transmit(card, apdu(c)).sw == 0x9000
    return transmit(card, apdu("00B0000011")).data


def _result(data: bytes, **kwargs: object):  # type: ignore[no-untyped-def]
    por = decode_por(data, **kwargs)  # type: ignore[arg-type]
    assert por.checksum_valid is True
    standard, report = split_counter_report(por.data)
    return por, CompactResponse.decode(standard), report


def test_rfm_update_yields_por_ok_with_counter_report_and_changes_the_file() -> None:
    card = new_card(0)
    answer = send_script(card, UPDATE_SPN, cntr=1)
    assert answer.sw == 0x9000
    por, response, report = _result(answer.data)
    assert (por.status, por.cntr, por.tar) == (ResponseStatus.POR_OK, 1, bytes.fromhex("b00010"))
    assert por.ciphered
    assert response == CompactResponse(3, 0x9000)
    assert (report.before, report.after) == (0, 1)
    assert _read_spn(card).startswith(b"ABC")
    rfm = card.report()["applications"][0]
    assert rfm["action_counter"] == 1
    assert rfm["journal"] == [{"counter": 1, "apdu": "00d6000003414243"}]


def test_3des_keyset_works_too() -> None:
    card = new_card(1)
    spi = SPI_DEFAULT
    answer = send_script(card, UPDATE_SPN, cntr=1, kic=TDES_KIC, kid=TDES_KIC, index=1)
    _por, response, report = _result(answer.data, spi=spi, kic=TDES_KIC, kid=TDES_KIC, index=1)
    assert response.executed == 3 and report.executed == 1


def test_five_actions_third_fails_counts_two_and_reports_the_failing_sw() -> None:
    # Card 7 has no EF 6F50 (template: absent when index % 10 == 7).
    card = new_card(7)
    # SELECT by path from the MF (P1 08, TS 102 221 §11.1.1): one navigation command per action.
    actions = [
        cc.action(
            [CommandApdu(0x00, 0xA4, 0x08, 0x0C, bytes.fromhex("7F20" + fid))], cc.update_binary(0, b"\x01")
        )
        for fid in ("6F46", "6F30", "6F50", "6F31", "6F7E")
    ]
    script = b"".join(c.encode_t0() for action in actions for c in action)
    answer = send_script(card, script, cntr=1, index=7)
    por, response, report = _result(answer.data, index=7)
    assert por.status == ResponseStatus.POR_OK
    assert response.sw == 0x6A82
    # NN counts the commands run, the failing one included: 2 actions of 2 commands + 1 SELECT.
    assert response.executed == 5
    assert (report.before, report.after) == (0, 2)
    assert card.report()["applications"][0]["action_counter"] == 2


def test_single_command_actions_third_fails_gives_nn_3() -> None:
    card = new_card(0)
    script = b"".join(
        c.encode_t0()
        for c in (
            cc.purse_reload(10),
            cc.purse_reload(20),
            cc.purse_reload(10**6),
            cc.purse_reload(1),
            cc.purse_reload(1),
        )
    )
    answer = send_script(card, script, cntr=1, tar=TAR_PURSE)
    _por, response, report = _result(answer.data)
    assert (response.executed, response.sw) == (3, 0x6985)
    assert (report.before, report.after) == (0, 2)
    assert card.report()["applications"][2]["balance"] == 1000 + 30


def test_wrong_keys_give_unsecured_status_01_without_valid_checksum() -> None:
    card = new_card(0)
    wrong = PacketKeys(kic_key=bytes(16), kid_key=bytes(16))
    answer = send_script(card, UPDATE_SPN, cntr=1, keys=wrong)
    por = decode_response_packet(answer.data, SPI_DEFAULT, 0x12, 0x12, fleet_keys(0))
    assert por.status == ResponseStatus.RC_CC_DS_FAILED
    assert por.checksum_valid is not True
    assert por.rhl == 0x0A and not por.ciphered and por.data == b""
    assert por.cntr == 0  # a ciphered CNTR of an unauthenticated packet is never echoed
    assert card.report()["applications"][0]["action_counter"] == 0
    assert card.report()["counters"] == []


def test_flipped_bit_gives_01() -> None:
    card = new_card(0)
    packet = bytearray(command_packet(UPDATE_SPN, 1))
    packet[-1] ^= 0x01
    por = decode_por(transmit(card, envelope(command_user_data(bytes(packet)))).data)
    assert por.status == ResponseStatus.RC_CC_DS_FAILED and por.checksum_valid is not True


def test_replayed_packet_yields_cntr_low_por() -> None:
    card = new_card(0)
    packet = command_packet(UPDATE_SPN, 5)
    assert decode_por(transmit(card, envelope(command_user_data(packet))).data).status == 0
    por = decode_por(transmit(card, envelope(command_user_data(packet))).data)
    assert por.status == ResponseStatus.CNTR_LOW
    assert por.cntr == 5  # authenticated by its CC: echoed
    assert card.report()["applications"][0]["action_counter"] == 1


def test_counter_mode_11_too_high_gives_03() -> None:
    card = new_card(0)
    spi = Spi(0x1E, 0x19)
    assert decode_por(send_script(card, UPDATE_SPN, cntr=1, spi=spi).data, spi=spi).status == 0
    assert (
        decode_por(send_script(card, UPDATE_SPN, cntr=3, spi=spi).data, spi=spi).status
        == ResponseStatus.CNTR_HIGH
    )
    assert decode_por(send_script(card, UPDATE_SPN, cntr=2, spi=spi).data, spi=spi).status == 0


def test_counter_at_maximum_is_blocked() -> None:
    card = new_card(0)
    assert decode_por(send_script(card, UPDATE_SPN, cntr=(1 << 40) - 1).data).status == 0
    assert (
        decode_por(send_script(card, UPDATE_SPN, cntr=(1 << 40) - 1).data).status
        == ResponseStatus.CNTR_BLOCKED
    )


def test_unknown_tar_gives_unsecured_09() -> None:
    card = new_card(0)
    por = decode_por(send_script(card, UPDATE_SPN, cntr=1, tar=b"\xb0\x00\x99").data)
    assert por.status == ResponseStatus.TAR_UNKNOWN and por.rhl == 0x0A and not por.ciphered


def test_spi_below_msl_gives_0a() -> None:
    card = new_card(0)
    spi = Spi(0x06, 0x19)  # no counter, MSL 16 demands counter "higher"
    por = decode_por(send_script(card, UPDATE_SPN, cntr=1, spi=spi).data, spi=spi)
    assert por.status == ResponseStatus.INSUFFICIENT_SECURITY_LEVEL
    assert card.report()["applications"][0]["action_counter"] == 0


@pytest.mark.parametrize("damage", ["chl", "cpl", "kvn", "mixed-kvn", "ds"])
def test_header_errors_give_06(damage: str) -> None:
    card = new_card(0)
    if damage in ("kvn", "mixed-kvn"):
        kic, kid = (0x32, 0x32) if damage == "kvn" else (0x12, 0x25)
        keys = PacketKeys(kic_key=bytes(16), kid_key=bytes(16), kic_implicit=None)
        packet = command_packet(UPDATE_SPN, 1, kic=kic, kid=kid, keys=keys)
    else:
        packet = bytearray(command_packet(UPDATE_SPN, 1))
        if damage == "chl":
            packet[2] = 0x0C
        elif damage == "cpl":
            packet[1] += 1
        else:
            packet[3] = 0x17  # SPI1 asks for a digital signature: unsupported
        packet = bytes(packet)
    por = decode_por(transmit(card, envelope(command_user_data(packet))).data)
    assert por.status == ResponseStatus.UNIDENTIFIED_SECURITY_ERROR
    assert por.rhl == 0x0A and not por.ciphered


def test_ciphered_part_not_block_aligned_gives_05() -> None:
    card = new_card(0)
    packet = bytearray(command_packet(UPDATE_SPN, 1)[:-1])
    packet[0:2] = (len(packet) - 2).to_bytes(2, "big")
    por = decode_por(transmit(card, envelope(command_user_data(bytes(packet)))).data)
    assert por.status == ResponseStatus.CIPHERING_ERROR and por.rhl == 0x0A


def test_no_por_when_spi2_asks_none_and_on_error_only_on_error() -> None:
    card = new_card(0)
    answer = send_script(card, UPDATE_SPN, cntr=1, spi=Spi(0x16, 0x00))
    assert (answer.data, answer.sw) == (b"", 0x9000)
    spi = Spi(0x16, 0x1A)
    assert send_script(card, UPDATE_SPN, cntr=2, spi=spi).data == b""
    assert decode_por(send_script(card, UPDATE_SPN, cntr=2, spi=spi).data, spi=spi).status == 2


def test_por_by_sms_submit_when_spi2_b6_is_set() -> None:
    card = new_card(0)
    spi = Spi(0x16, 0x39)
    r = card.exchange(envelope(command_user_data(command_packet(UPDATE_SPN, 1, spi=spi))))
    assert r[-2] == 0x61
    r = card.exchange(bytes((0x00, 0xC0, 0x00, 0x00, r[-1])))
    short, sw = r[:-2], int.from_bytes(r[-2:], "big")
    assert sw >> 8 == 0x91
    short_por = decode_por(short, spi=spi)
    assert (
        short_por.status == ResponseStatus.ACTUAL_RESPONSE_BY_SMS_SUBMIT and short_por.checksum_valid is True
    )
    assert short_por.data == b""
    submits = fetch_sms_submits(card, sw)
    assert len(submits) == 1
    submit = submits[0]
    assert submit.encode()[0] == 0x41 and (submit.tp_pid, submit.tp_dcs) == (0x7F, 0xF6)
    assert submit.tp_da.digits == "12345678"
    por, response, report = _result(submit.tp_ud, spi=spi)
    assert por.status == 0 and response.executed == 3 and report.after == 1


def test_long_por_switches_to_concatenated_sms_submit() -> None:
    card = new_card(0)
    script = apdu("00A4000C027F10 00A4000C026F3C 00B2010400")  # READ RECORD 1 of EF.SMS: 176 octets
    answer = send_script(card, script, cntr=1)
    assert answer.sw >> 8 == 0x91
    assert decode_por(answer.data).status == ResponseStatus.ACTUAL_RESPONSE_BY_SMS_SUBMIT
    submits = fetch_sms_submits(card, answer.sw)
    assert len(submits) == 2
    reassembler = Reassembler(timeout_s=10)
    whole = None
    for submit in submits:
        whole = reassembler.add("card", submit.tp_ud, 0.0) or whole
    assert whole is not None and whole[:3] == b"\x02\x71\x00"
    _por, response, report = _result(whole)
    assert response.executed == 3 and len(response.data) == 176 and report.executed == 0


@pytest.mark.parametrize("order", ["in-order", "reversed", "duplicated"])
def test_concatenated_command_packet_is_reassembled(order: str) -> None:
    card = new_card(0)
    record = bytes(range(176))
    script = apdu("00A4000C027F10 00A4000C026F3C") + cc.update_record(1, record).encode_t0()
    envelopes = concatenated_envelopes(command_packet(script, 1))
    assert len(envelopes) == 2
    if order == "reversed":
        envelopes.reverse()
    elif order == "duplicated":
        envelopes = [envelopes[0], envelopes[0], envelopes[1]]
    for e in envelopes[:-1]:
        assert card.exchange(e) == b"\x90\x00"
    answer = transmit(card, envelopes[-1])
    _por, response, report = _result(answer.data)
    assert response == CompactResponse(3, 0x9000) and report.after == 1
    for c in ("00A4000C027F10", "00A4000C026F3C"):
        transmit(card, apdu(c))
    assert transmit(card, apdu("00B2010400")).data == record


def test_ram_install_flow_and_delete() -> None:
    card = new_card(0)
    lf, module, app_aid = (
        bytes.fromhex("a0000000871001"),
        bytes.fromhex("a000000087100101"),
        bytes.fromhex("a00000008710010101"),
    )
    commands = [
        cc.install_for_load(lf),
        *cc.load_blocks(bytes(150), block_size=64),
        cc.install_for_install(lf, module, app_aid),
    ]
    script = b"".join(c.encode_t0() for c in commands)
    _, response, report = _result(send_script(card, script, 1, tar=TAR_RAM).data)
    assert response == CompactResponse(5, 0x9000) and report.executed == 5
    ram = card.report()["applications"][1]
    assert ram["instances"] == [app_aid.hex()] and ram["load_files"][lf.hex()] == {
        "blocks": 3,
        "complete": True,
    }
    # Deleting the load file first is refused (it has an instance), the instance then the file work.
    script = b"".join(c.encode_t0() for c in (cc.delete_aid(lf),))
    assert _result(send_script(card, script, 2, tar=TAR_RAM).data)[1].sw == 0x6985
    script = b"".join(c.encode_t0() for c in (cc.delete_aid(app_aid), cc.delete_aid(lf), cc.delete_aid(lf)))
    _por, response, report = _result(send_script(card, script, 3, tar=TAR_RAM).data)
    assert (response.executed, response.sw, report.executed) == (3, 0x6A88, 2)
    assert "instances" not in card.report()["applications"][1]


def test_ram_load_progress_persists_across_scripts() -> None:
    card = new_card(0)
    lf = bytes.fromhex("a0000000871002")
    blocks = cc.load_blocks(bytes(100), block_size=40)
    first = b"".join(c.encode_t0() for c in (cc.install_for_load(lf), blocks[0]))
    assert _result(send_script(card, first, 1, tar=TAR_RAM).data)[1].sw == 0x9000
    rest = b"".join(c.encode_t0() for c in blocks[1:])
    assert _result(send_script(card, rest, 2, tar=TAR_RAM).data)[2].executed == 2
    assert card.report()["applications"][1]["load_files"][lf.hex()]["complete"] is True
    bad = cc.install_for_install(bytes.fromhex("a0000000879999"), b"\xa0\x01", b"\xa0\x02").encode_t0()
    assert _result(send_script(card, bad, 3, tar=TAR_RAM).data)[1].sw == 0x6A88


def test_purse_reload_parameter_balance_and_over_max() -> None:
    card = new_card(3)  # balance 1000 + 3 * 100
    script = b"".join(
        c.encode_t0()
        for c in (cc.purse_reload(700), cc.purse_set_parameter(1, b"\x05"), cc.purse_get_balance())
    )
    _, response, report = _result(send_script(card, script, 1, tar=TAR_PURSE, index=3).data, index=3)
    assert response == CompactResponse(3, 0x9000, (2000).to_bytes(4, "big"))
    assert report.executed == 2
    over = cc.purse_reload(100_000 - 2000 + 1).encode_t0()
    _por, response, report = _result(send_script(card, over, 2, tar=TAR_PURSE, index=3).data, index=3)
    assert (response.sw, report.executed) == (0x6985, 0)
    zero = apdu("8030000004 00000000")
    assert _result(send_script(card, zero, 3, tar=TAR_PURSE, index=3).data, index=3)[1].sw == 0x6A80
    purse = card.report()["applications"][2]
    assert purse["balance"] == 2000 and purse["parameters"] == {"01": "05"}


def test_fleet_purse_balance_varies_by_index() -> None:
    assert [new_card(i).report()["applications"][2]["balance"] for i in (0, 1, 49, 50)] == [
        1000,
        1100,
        5900,
        1000,
    ]


def test_expanded_format_tar() -> None:
    apps = tuple(
        dataclasses.replace(a, format=ScriptFormat.EXPANDED) if a.tar == bytes.fromhex("b00010") else a
        for a in TEMPLATE.app_profiles
    )
    from sim_emulator.applets import ApplicationTable

    template = dataclasses.replace(TEMPLATE, app_profiles=apps, applications=ApplicationTable(apps))
    card = card_from_fleet(SPEC, 0, template)
    commands = (*cc.select_path("3F00/7F20/6F46"), cc.update_binary(0, b"Z"), *cc.select_path("7F10/6F99"))
    script = ExpandedCommandScript(commands).encode()
    por = decode_por(send_script(card, script, 1).data)
    standard, report = split_counter_report(por.data)
    response = ExpandedResponse.decode(standard)
    assert response.executed == 6 and response.r_apdus[-1].sw == 0x6A82 and report.executed == 1
    bad = decode_por(send_script(card, b"\xaa\x03\x99\x01\x00", 2).data)
    assert ExpandedResponse.decode(split_counter_report(bad.data)[0]).bad_format == 1


@pytest.mark.parametrize(
    ("style", "status", "secured", "cntr"),
    [("unsecured", 0x02, False, 5), ("secured", 0x02, True, 5), ("sja2", 0x06, False, 0)],
)
def test_error_por_styles_for_a_replay(style: str, status: int, secured: bool, cntr: int) -> None:
    from sim_emulator.profile import CardOptions, ErrorPorStyle

    template = dataclasses.replace(TEMPLATE, options=CardOptions(error_por_style=ErrorPorStyle(style)))
    card = card_from_fleet(SPEC, 0, template)
    packet = command_packet(UPDATE_SPN, 5)
    transmit(card, envelope(command_user_data(packet)))
    por = decode_por(transmit(card, envelope(command_user_data(packet))).data)
    assert (por.status, por.ciphered, por.checksum_valid is True, por.cntr) == (
        status,
        secured,
        secured,
        cntr,
    )


def test_secured_style_still_never_secures_a_failed_checksum() -> None:
    from sim_emulator.profile import CardOptions, ErrorPorStyle

    template = dataclasses.replace(TEMPLATE, options=CardOptions(error_por_style=ErrorPorStyle.SECURED))
    card = card_from_fleet(SPEC, 0, template)
    wrong = PacketKeys(kic_key=fleet_keys(0).kic_key, kid_key=bytes(16))
    por = decode_por(send_script(card, UPDATE_SPN, cntr=1, keys=wrong).data)
    assert por.status == 0x01 and por.checksum_valid is not True and not por.ciphered

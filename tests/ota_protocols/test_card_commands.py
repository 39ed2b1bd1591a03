"""Builders and parsers of the commands scripts carry (ota_protocols/apdu/card_commands.py)."""

from __future__ import annotations

import pytest

from ota_protocols.action_counter import is_counted
from ota_protocols.apdu import card_commands as cc
from ota_protocols.errors import DecodeError, EncodeError


def test_rfm_commands_bytes() -> None:
    # Hand-built from TS 102 221 §11.1.1 / §11.1.4 / §11.1.6.
    assert [a.encode_t0().hex() for a in cc.select_path("3F00/7F20/6F46")] == [
        "00a4000c023f00",
        "00a4000c027f20",
        "00a4000c026f46",
    ]
    assert cc.update_binary(0x102, b"\xaa\xbb").encode_t0().hex() == "00d6010202aabb"
    assert cc.update_record(3, b"\x01").encode_t0().hex() == "00dc03040101"


def test_ram_commands_round_trip_through_the_card_parsers() -> None:
    lf, module, app = (
        bytes.fromhex("a0000000871001"),
        bytes.fromhex("a000000087100101"),
        bytes.fromhex("a0000000871002"),
    )
    load = cc.parse_install(cc.install_for_load(lf))
    assert (load.p1, load.load_file_aid) == (0x02, lf)
    install = cc.parse_install(cc.install_for_install(lf, module, app))
    assert (install.load_file_aid, install.module_aid, install.application_aid) == (lf, module, app)
    assert cc.parse_delete(cc.delete_aid(app)) == app
    blocks = cc.load_blocks(bytes(150), block_size=64)
    assert [(b.p1, b.p2, len(b.data)) for b in blocks] == [(0, 0, 64), (0, 1, 64), (0x80, 2, 22)]


def test_every_script_command_is_counted_and_navigation_is_not() -> None:
    counted = [
        cc.update_binary(0, b"\x01"),
        cc.update_record(1, b"\x01"),
        cc.install_for_load(b"\xa0"),
        cc.delete_aid(b"\xa0"),
        cc.purse_reload(5),
        cc.purse_set_parameter(1, b"\x01"),
        *cc.load_blocks(b"\x01"),
    ]
    assert all(is_counted(a.ins) for a in counted)
    assert not any(is_counted(a.ins) for a in [*cc.select_path("3F00"), cc.purse_get_balance()])


@pytest.mark.parametrize("path", ["3F0", "3F00/XYZW", "3F00//7F20"])
def test_bad_paths_name_the_part(path: str) -> None:
    with pytest.raises(EncodeError, match="path"):
        cc.parse_path(path)


def test_truncated_install_is_a_decode_error() -> None:
    bad = cc.install_for_load(b"\xa0\x00")
    with pytest.raises(DecodeError):
        cc.parse_install(type(bad)(bad.cla, bad.ins, bad.p1, bad.p2, bad.data[:2]))

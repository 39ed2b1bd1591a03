"""The command builder: single SMS and the 03.48 concatenation, opened by the shared decoder."""

from __future__ import annotations

import random

import pytest

from ota_protocols.apdu.remote_commands import ExpandedCommandScript, decode_compact_commands
from ota_protocols.secured_packet.command_packet import decode_command_packet, split_command_user_data
from ota_protocols.sms.concatenation import Reassembler
from ota_server.command_builder import build_user_data, script_apdus
from ota_server.model import ScriptFormat, Security
from tests.ota_server.cardsim import aes_keys
from tests.ota_server.harness import SECURITY, make_actions


def test_small_script_is_one_sms_with_the_cpi_udh() -> None:
    actions = make_actions(1)
    segments = build_user_data(aes_keys(), SECURITY, 7, actions, rng=random.Random(1))
    assert len(segments) == 1 and len(segments[0]) <= 140
    packet = split_command_user_data(segments[0])
    opened = decode_command_packet(packet, aes_keys())
    assert opened.cntr == 7 and opened.checksum_valid is True
    assert decode_compact_commands(opened.data) == script_apdus(actions)


def test_status_query_is_an_empty_script() -> None:
    (ud,) = build_user_data(aes_keys(), SECURITY, 9, (), rng=random.Random(1))
    opened = decode_command_packet(split_command_user_data(ud), aes_keys())
    assert opened.data == b"" and opened.cntr == 9


@pytest.mark.parametrize("n", [4, 12])
def test_big_script_is_concatenated_in_the_0348_layout_and_reassembles(n: int) -> None:
    actions = make_actions(n)
    segments = build_user_data(aes_keys(), SECURITY, 3, actions, rng=random.Random(5))
    assert len(segments) > 1 and all(len(s) <= 140 for s in segments)
    ref = random.Random(5).randrange(256)
    total = len(segments)
    # protocols.md §14.1: concatenation IE first, then the CPI, in the first segment only.
    assert segments[0][:8] == bytes((7, 0, 3, ref, total, 1, 0x70, 0))
    for seq, segment in enumerate(segments[1:], start=2):
        assert segment[:6] == bytes((5, 0, 3, ref, total, seq))
    reassembler = Reassembler(timeout_s=10)
    whole = None
    for segment in reversed(segments):  # any order
        whole = reassembler.add("ota", segment, 0.0)
    assert whole is not None
    opened = decode_command_packet(split_command_user_data(whole), aes_keys())
    assert opened.checksum_valid is True
    assert decode_compact_commands(opened.data) == script_apdus(actions)


def test_expanded_format_carries_the_same_apdus() -> None:
    security = Security(
        spi=SECURITY.spi, kic=0x12, kid=0x12, tar=SECURITY.tar, script_format=ScriptFormat.EXPANDED
    )
    actions = make_actions(2)
    segments = build_user_data(aes_keys(), security, 1, actions, rng=random.Random(1))
    reassembler = Reassembler(timeout_s=10)
    whole = [reassembler.add("ota", s, 0.0) for s in segments][-1]
    assert whole is not None
    opened = decode_command_packet(split_command_user_data(whole), aes_keys())
    assert ExpandedCommandScript.decode(opened.data).apdus == tuple(script_apdus(actions))


def test_a_kept_script_gives_the_bytes_of_encoding_the_actions() -> None:
    """The engine encodes a step's shared script once and passes it in: same segments, same rng use."""
    from dataclasses import replace

    from ota_server.command_builder import encode_script

    every = tuple(make_actions(12))  # long enough to need concatenation (the rng draws a reference)
    for fmt in ScriptFormat:
        security = replace(SECURITY, script_format=fmt)
        for first in range(len(every) + 1):
            actions = every[first:]
            script = encode_script(script_apdus(actions), fmt)
            plain = build_user_data(aes_keys(), security, 9, actions, rng=random.Random(5))
            kept = build_user_data(aes_keys(), security, 9, actions, rng=random.Random(5), script=script)
            assert kept == plain

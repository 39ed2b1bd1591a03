"""PoR routing: receipts are not PoRs, concatenated PoRs are reassembled, PoR -> job."""

from __future__ import annotations

import random

from ota_protocols.secured_packet.response_packet import ResponsePacket, encode_response_packet
from ota_protocols.sms.concatenation import split_user_data
from ota_protocols.sms.user_data_header import RPI
from ota_server.engine.por_matcher import (
    Candidate,
    DeliverKind,
    OutstandingIndex,
    PorAssembler,
    choose,
    classify_deliver,
)
from ota_server.engine.por_verification import PorReport, verify_por
from tests.ota_server.cardsim import aes_keys
from tests.ota_server.harness import SECURITY

POR = bytes.fromhex("027100000e0ab0001000000000010000")


def test_classifies_receipts_pors_segments_and_others() -> None:
    assert classify_deliver(0x04, b"id:1 stat:DELIVRD") is DeliverKind.RECEIPT
    assert classify_deliver(0x44, POR) is DeliverKind.RECEIPT  # a receipt flag wins, even with UDHI
    assert classify_deliver(0x40, POR) is DeliverKind.POR
    assert classify_deliver(0x43, POR) is DeliverKind.POR  # Kannel's store-and-forward bits
    assert classify_deliver(0x40, bytes.fromhex("0500030a0201") + b"x") is DeliverKind.POR_SEGMENT
    assert classify_deliver(0x00, b"hello") is DeliverKind.OTHER
    assert classify_deliver(0x08, POR) is DeliverKind.OTHER  # SME ack


def test_concatenated_sms_submit_por_reassembles_and_verifies() -> None:
    data = bytes(range(200)) + bytes.fromhex("ac08") + (0).to_bytes(4, "big") + (4).to_bytes(4, "big")
    ud = encode_response_packet(
        ResponsePacket(SECURITY.tar, 42, 0, data), SECURITY.spi, 0x12, 0x12, aes_keys()
    )
    segments = split_user_data(ud[3:], first_ies=(RPI,), reference=random.Random(3).randrange(256))
    assert len(segments) == 2 and segments[1][:3] == b"\x05\x00\x03"
    assert classify_deliver(0x40, segments[0]) is DeliverKind.POR_SEGMENT
    assembler = PorAssembler()
    assert assembler.add("4917", segments[1], 0.0) is None
    whole = assembler.add("4917", segments[0], 0.0)
    assert whole == ud
    report = verify_por(whole, SECURITY, aes_keys())
    assert isinstance(report, PorReport) and report.cntr == 42 and report.counter is not None


def test_match_by_cntr_then_error_with_zero_cntr_goes_to_the_oldest() -> None:
    index: OutstandingIndex[str] = OutstandingIndex()
    index.register("4917", SECURITY.tar, "old")
    index.register("4917", SECURITY.tar, "new")
    assert index.candidates("4917", SECURITY.tar) == ("old", "new")
    assert index.candidates("4918", SECURITY.tar) == ()
    exact = [Candidate("old", frozenset({1}), 2, 0, None), Candidate("new", frozenset({2}), 2, 0, None)]
    assert choose(exact).job == "new"  # type: ignore[union-attr]
    zero = [Candidate("old", frozenset({1}), 0, 0x09, None), Candidate("new", frozenset({2}), 0, 0x09, None)]
    assert choose(zero).job == "old"  # type: ignore[union-attr]
    stale = [Candidate("old", frozenset({1}), 7, 0, None)]
    assert choose(stale) is None
    index.unregister("4917", SECURITY.tar, "old")
    assert index.candidates("4917", SECURITY.tar) == ("new",)


def test_assembler_deadlines_follow_the_reassembler_through_eviction_and_expiry() -> None:
    """The assembler skips its reassembler while nothing was added since it was last seen empty:
    the deadlines and expiries it gives are the reassembler's own, evicted sets included."""
    from ota_protocols.sms.concatenation import Reassembler

    data = bytes(200)
    packet = ResponsePacket(SECURITY.tar, 42, 0, data)
    ud = encode_response_packet(packet, SECURITY.spi, 0x12, 0x12, aes_keys())
    parts = split_user_data(ud[3:], first_ies=(RPI,), reference=1)
    assembler, plain = PorAssembler(timeout_s=10.0, max_pending=1), Reassembler(timeout_s=10.0, max_pending=1)
    assert assembler.next_deadline() is None and assembler.expire(0.0) == []
    for at, msisdn in ((1.0, "33600000001"), (2.0, "33600000002")):  # the second evicts the first
        assert assembler.add(msisdn, parts[0], at) is None
        plain.add(msisdn, parts[0], at)
    assert assembler.next_deadline() == plain.next_deadline() == 2.0  # the eviction, reported at 2.0
    assert [e.originator for e in assembler.expire(2.0)] == [e.originator for e in plain.expire(2.0)]
    assert assembler.next_deadline() == plain.next_deadline() == 12.0
    assert len(assembler.expire(12.0)) == len(plain.expire(12.0)) == 1
    assert assembler.next_deadline() is None and plain.next_deadline() is None


def test_a_lone_candidate_is_claimed_exactly_as_choose_decides() -> None:
    from ota_server.engine.por_matcher import Candidate, choose, claims_alone

    for outstanding in ((), (0,), (5,), (5, 6), (0, 7)):
        for cntr in (0, 5, 6, 9):
            for status in (0, 1, 2, 0x0B):
                alone = Candidate("job", frozenset(outstanding), cntr, status, None)
                assert claims_alone(outstanding, cntr, status) is (choose([alone]) is not None)

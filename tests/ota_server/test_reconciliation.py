"""Claim 1c as a table: what the job machine does with each PoR, timeout and status."""

from __future__ import annotations

from ota_protocols.apdu.apdu import CommandApdu
from ota_protocols.secured_packet.response_packet import ResponsePacket, encode_response_packet, seal_response
from ota_protocols.secured_packet.security_parameters import Spi
from ota_server.engine.job_machine import step
from ota_server.engine.job_model import Begin, Job, MessageKind, Phase, PorArrived, SendQuery, SendScript
from ota_server.engine.por_verification import PorReport, RejectedPor, verify_por
from tests.ota_server.cardsim import CardSim, aes_keys
from tests.ota_server.harness import POLICY, SECURITY, Harness, make_actions


def fail_action(number: int, sw: int, *, times: int = 1_000_000):
    """Fail the counted command of action ``number`` (0-based) with ``sw``, ``times`` times."""
    left = [times]

    def fail(apdu: CommandApdu) -> int | None:
        if apdu.ins == 0xD6 and apdu.data[0] == number and left[0] > 0:
            left[0] -= 1
            return sw
        return None

    return fail


def started(n: int, **card_kw: object) -> Harness:
    """A harness past first contact: the baseline query answered, the script in flight."""
    h = Harness(make_actions(n), card=CardSim(aes_keys(), **card_kw))  # type: ignore[arg-type]
    t = h.begin()
    assert t.commands == (SendQuery(),)
    h.round_trip()
    assert h.job.confirmed == 0 and h.job.start_counter == 0
    assert h.sends[-1] == (MessageKind.SCRIPT, 0, n)
    return h


def test_first_contact_queries_then_all_actions_run_and_the_job_is_confirmed() -> None:
    h = started(4)
    t = h.round_trip()
    assert h.job.phase is Phase.DONE
    assert (h.job.applied, h.job.confirmed, h.job.counter_path) == (4, 4, "por")
    assert t.commands[-1].phase is Phase.DONE  # type: ignore[union-attr]
    assert h.journal_actions() == [0, 1, 2, 3]


def test_a_known_counter_skips_the_query() -> None:
    h = Harness(make_actions(2))
    h.job = Job(n=2, confirmed=0, start_counter=0)
    assert h.begin().commands == (SendScript(0, 2),)


def test_permanent_failure_of_the_third_of_five_ends_partial_with_the_reason() -> None:
    h = started(5, fail=fail_action(2, 0x6A82))
    h.round_trip()
    assert h.job.phase is Phase.PARTIAL
    assert (h.job.applied, h.job.confirmed) == (2, 2)
    assert "last 3 not executed" in h.job.reason and "6A82" in h.job.reason
    assert h.job.resent_actions == 0 and len(h.mt) == 0


def test_permanent_failure_of_the_first_action_ends_failed() -> None:
    h = started(3, fail=fail_action(0, 0x6A82))
    h.round_trip()
    assert h.job.phase is Phase.FAILED and "last 3 not executed" in h.job.reason


def test_transient_failure_resends_exactly_the_last_three_with_a_fresh_cntr() -> None:
    h = started(5, fail=fail_action(2, 0x6F00, times=1))
    first_cntr = h.mt[0][0]
    h.round_trip()
    assert h.sends[-1] == (MessageKind.SCRIPT, 2, 3)
    assert h.mt[0][0] > first_cntr
    assert h.job.resent_actions == 3
    h.round_trip()
    assert h.job.phase is Phase.DONE and h.job.confirmed == 5
    assert h.journal_actions() == [0, 1, 2, 3, 4]


def test_transient_failures_give_up_after_max_attempts() -> None:
    h = started(3, fail=fail_action(1, 0x6F00))
    for _ in range(POLICY.max_attempts):
        h.round_trip()
    assert h.job.phase is Phase.FAILED and "gave up after 4 scripts" in h.job.reason
    assert h.job.applied == 1 and h.journal_actions() == [0]


def test_lost_por_is_resolved_by_a_query_and_nothing_is_resent() -> None:
    h = started(4)
    h.deliver_mt()
    h.por.clear()  # the PoR is lost
    t = h.deadline()
    assert h.job.phase is Phase.BACKOFF and t.commands == ()
    t = h.deadline()
    assert t.commands == (SendQuery(),)
    h.round_trip()
    assert h.job.phase is Phase.DONE and h.job.counter_path == "query"
    assert h.job.resent_actions == 0 and h.journal_actions() == [0, 1, 2, 3]


def test_lost_script_is_resolved_by_a_query_and_everything_is_resent() -> None:
    h = started(4)
    h.mt.clear()  # the script is lost
    h.deadline()
    h.deadline()
    h.round_trip()  # the query: x = n
    assert h.sends[-1] == (MessageKind.SCRIPT, 0, 4) and h.job.resent_actions == 4
    h.round_trip()
    assert h.job.phase is Phase.DONE and h.journal_actions() == [0, 1, 2, 3]


def test_late_script_por_during_backoff_settles_the_job_before_the_query() -> None:
    h = started(2)
    h.deliver_mt()
    late = h.por.pop()
    h.deadline()  # timeout -> backoff
    h.feed_por(late)
    assert h.job.phase is Phase.DONE and h.job.queries == 1  # only the baseline query


def test_counter_mismatch_is_recorded_queried_and_never_resent_blindly() -> None:
    h = started(3)
    h.card.action_counter += 7  # someone else ran actions on this card
    h.round_trip()
    assert h.job.mismatches == 1 and h.sends[-1][0] is MessageKind.QUERY
    h.round_trip()
    assert h.job.phase is Phase.FAILED and "counter mismatch" in h.job.reason
    assert [k for k, _, _ in h.sends].count(MessageKind.SCRIPT) == 1


def _error_por(status: int, cntr: int) -> bytes:
    return seal_response(ResponsePacket(SECURITY.tar, cntr, status), None, None)


def test_refusing_statuses_are_fenced_then_fail_after_max_attempts_with_their_meaning() -> None:
    for status, meaning in (
        (0x01, "RC/CC/DS failed"),
        (0x05, "ciphering error"),
        (0x06, "unidentified security error"),
        (0x09, "TAR unknown"),
        (0x0A, "insufficient security"),
    ):
        h = started(2)
        scripts_before = sum(1 for kind, _, _ in h.sends if kind is MessageKind.SCRIPT)
        for attempt in range(1, POLICY.max_attempts + 1):
            h.feed_por(_error_por(status, h.mt[-1][0]))
            if attempt < POLICY.max_attempts:
                # No script ran and a clean copy may be in flight: a fence query, never a direct resend.
                assert h.job.phase is Phase.BACKOFF, (status, attempt)
                h.deadline()
                assert h.sends[-1][0] is MessageKind.QUERY
        assert h.job.phase is Phase.FAILED, status
        assert meaning in h.job.reason and f"{status:02X}" in h.job.reason
        assert sum(1 for kind, _, _ in h.sends if kind is MessageKind.SCRIPT) == scripts_before


def test_error_por_with_zero_cntr_matches_the_open_round() -> None:
    h = started(2)
    h.feed_por(_error_por(0x09, 0))
    assert "09 TAR unknown" in h.job.statuses  # matched, not ignored as stale
    assert h.job.phase is Phase.BACKOFF


def test_a_corrupted_script_is_fenced_then_resent_and_every_action_runs_once() -> None:
    h = started(3)
    # The radio corrupted the script: the card answered 01 and ran nothing.
    h.mt.pop(0)
    h.feed_por(_error_por(0x01, h.cntr))
    h.deadline()  # back-off over: the fence query goes out
    assert h.sends[-1][0] is MessageKind.QUERY
    h.round_trip()  # the query's PoR: counter unchanged, all 3 actions missing -> resent
    assert h.sends[-1] == (MessageKind.SCRIPT, 0, 3)
    h.round_trip()
    assert h.job.phase is Phase.DONE
    assert h.journal_actions() == [0, 1, 2]


def test_cntr_low_is_a_replayed_copy_not_a_failure() -> None:
    h = started(2)
    h.deliver_mt(keep=True)  # the MT is duplicated
    h.deliver_mt()
    assert len(h.por) == 2
    h.deliver_por(1)  # the duplicate's 02 CNTR low arrives first
    assert h.job.phase is Phase.WAITING and "02 CNTR low" in h.job.statuses
    h.deliver_por()
    assert h.job.phase is Phase.DONE and h.journal_actions() == [0, 1]


def test_status_0b_waits_for_the_sms_submit_por() -> None:
    h = started(2)
    cntr = h.mt[0][0]
    deadline = h.job.deadline
    h.now += 3
    short = encode_response_packet(ResponsePacket(SECURITY.tar, cntr, 0x0B), SECURITY.spi, 0x12, 0x12, h.keys)
    h.feed_por(short)
    assert h.job.phase is Phase.WAITING and h.job.deadline == h.now + POLICY.por_timeout_s != deadline
    h.round_trip()
    assert h.job.phase is Phase.DONE


def test_forged_status_00_por_without_checksum_is_rejected() -> None:
    h = started(2)
    card = CardSim(aes_keys(), action_counter=0)
    forged_data = (
        bytes.fromhex("029000") + bytes.fromhex("ac08") + (0).to_bytes(4, "big") + (2).to_bytes(4, "big")
    )
    forged = seal_response(ResponsePacket(SECURITY.tar, h.mt[0][0], 0x00, forged_data), None, None)
    assert isinstance(verify_por(forged, SECURITY, card.keys), RejectedPor)
    # The same PoR with a checksum made with the wrong key is rejected too.
    wrong = CardSim(aes_keys())
    wrong.keys = type(card.keys)(kic_key=bytes(16), kid_key=bytes(16))
    sealed = encode_response_packet(
        ResponsePacket(SECURITY.tar, h.mt[0][0], 0x00, forged_data), SECURITY.spi, 0x12, 0x12, wrong.keys
    )
    assert isinstance(verify_por(sealed, SECURITY, h.keys), RejectedPor)
    assert h.job.phase is Phase.WAITING


def test_unsecured_status_00_por_is_accepted_when_spi2_asks_for_no_checksum() -> None:
    security = type(SECURITY)(spi=Spi.from_bytes(bytes.fromhex("1601")), kic=0x12, kid=0x12, tar=SECURITY.tar)
    data = bytes.fromhex("029000ac08") + (0).to_bytes(4, "big") + (2).to_bytes(4, "big")
    ud = seal_response(ResponsePacket(SECURITY.tar, 5, 0x00, data), None, None)
    report = verify_por(ud, security, aes_keys())
    assert isinstance(report, PorReport) and report.counter is not None and report.counter.after == 2


def test_terminal_jobs_ignore_late_pors() -> None:
    h = started(1)
    h.deliver_mt()
    por = h.por[0]
    h.deliver_por()
    report = verify_por(por, SECURITY, h.keys)
    assert isinstance(report, PorReport)
    t = step(h.job, PorArrived(report), h.now, POLICY)
    assert not t.changed and t.job.phase is Phase.DONE
    assert step(h.job, Begin(), h.now, POLICY).commands == ()


def test_timeouts_without_any_por_end_failed_after_max_attempts() -> None:
    h = started(2)
    while not h.job.phase.terminal:
        h.mt.clear()
        h.deadline()
    assert h.job.phase is Phase.FAILED and "no PoR after 4 messages" in h.job.reason

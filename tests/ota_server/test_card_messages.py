"""Card-originated counter reports (claims 7-9) and the fence rule, on the pure job machine.

Unit cases first (open_card_message, the MO replay rule, each branch of the fence rule), then a
hypothesis state machine: send, lose, duplicate, deliver late, tear (k actions then a power cut,
no PoR), crash and restart of the server (in-memory state dropped, the persisted row resumed with
service._resume), and card messages (transaction requests and information messages carrying the
card's counter) at random times. Invariants: no action ever runs twice or out of order; after a
lossless drain the job is DONE, every action ran exactly once, the server's counter equals the
card's, and every accepted transaction request was answered (TRANSACTION REPLY seen by the card).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ota_protocols.action_counter import CardMessage, CardMessageKind, CounterReport, is_counted
from ota_protocols.apdu.apdu import is_success_sw
from ota_protocols.apdu.remote_commands import CompactResponse, decode_compact_commands
from ota_protocols.secured_packet.command_packet import (
    CommandPacket,
    encode_command_packet,
    open_command_packet,
    parse_command_header,
)
from ota_protocols.secured_packet.response_packet import ResponsePacket, encode_response_packet
from ota_protocols.secured_packet.security_parameters import Spi
from ota_server.card_store import JobRow
from ota_server.command_builder import build_packet
from ota_server.engine.card_reports import CardReport, RejectedCardMessage, mo_cntr_fresh, open_card_message
from ota_server.engine.job_machine import step
from ota_server.engine.job_model import (
    Accepted,
    Begin,
    CardReportArrived,
    DeadlinePassed,
    Job,
    MessageKind,
    Phase,
    Policy,
    PorArrived,
    SendQuery,
    SendReply,
    SendScript,
    Sent,
    Transition,
)
from ota_server.engine.outbound import reply_actions as _reply_actions
from ota_server.engine.por_verification import PorReport, verify_por
from ota_server.engine.records import job_extra as _job_extra
from ota_server.engine.records import resume_job as _resume
from tests.ota_server.cardsim import CardSim, aes_keys
from tests.ota_server.harness import SECURITY, make_actions

MO_SPI = Spi(0x16, 0x00)  # what the card sends: cipher, CC, counter higher, no PoR
TAR = SECURITY.tar
POLICY = Policy(por_timeout_s=5.0, max_attempts=10_000, backoff_s=1.0, max_backoff_s=4.0)


def mo_user_data(kind: CardMessageKind, sequence: int, counter: int, cntr: int, *, tar: bytes = TAR) -> bytes:
    packet = encode_command_packet(
        CommandPacket(MO_SPI, 0x12, 0x12, tar, cntr, CardMessage(kind, sequence, counter).encode()),
        aes_keys(),
    )
    return b"\x02\x70\x00" + packet


def report(kind: CardMessageKind, counter: int, sequence: int = 1, cntr: int = 1) -> CardReportArrived:
    return CardReportArrived(CardReport(TAR, cntr, CardMessage(kind, sequence, counter)))


TX = CardMessageKind.TRANSACTION_REQUEST
INFO = CardMessageKind.INFORMATION


# --------------------------------------------------------------------------- opening


def test_open_card_message_verifies_the_checksum_and_reads_the_counter() -> None:
    ud = mo_user_data(TX, 7, 42, cntr=3)
    opened = open_card_message(ud, {1: aes_keys()})
    assert isinstance(opened, CardReport)
    assert (opened.tar, opened.cntr, opened.message.sequence, opened.message.counter) == (TAR, 3, 7, 42)
    assert opened.label == "transaction"
    forged = bytearray(ud)
    forged[-1] ^= 1
    rejected = open_card_message(bytes(forged), {1: aes_keys()})
    assert isinstance(rejected, RejectedCardMessage) and "forged or corrupt" in rejected.reason
    assert isinstance(open_card_message(ud, {}), RejectedCardMessage)  # no key set 1
    assert isinstance(open_card_message(b"\x02\x70\x00\x00", {1: aes_keys()}), RejectedCardMessage)


def test_unauthenticated_card_message_is_refused() -> None:
    packet = encode_command_packet(
        CommandPacket(Spi(0x10, 0x00), 0x00, 0x00, TAR, 5, CardMessage(INFO, 0, 9).encode()), aes_keys()
    )
    rejected = open_card_message(b"\x02\x70\x00" + packet, {1: aes_keys()})
    assert isinstance(rejected, RejectedCardMessage) and "no CC/DS" in rejected.reason


def test_mo_replay_rule_is_counter_higher() -> None:
    assert mo_cntr_fresh(None, 1)
    assert not mo_cntr_fresh(None, 0)
    assert mo_cntr_fresh(4, 5)
    assert not mo_cntr_fresh(5, 5) and not mo_cntr_fresh(5, 2)


# --------------------------------------------------------------------------- the fence rule


def waiting_on_script() -> Job:
    """CA 10, a script of 4 actions sent with CNTR 7 and unresolved."""
    job = step(Job(n=4, confirmed=10, start_counter=10), Begin(), 0.0, POLICY).job
    return step(job, Sent(MessageKind.SCRIPT, 7), 0.0, POLICY).job


def test_card_message_with_script_in_flight_is_not_a_fence() -> None:
    job = waiting_on_script()
    # Counter 12: the last 2 seem missing, but the script may still arrive: nothing resent.
    t = step(job, report(INFO, 12), 1.0, POLICY)
    assert t.commands == () and t.job.applied == 0 and t.job.script_cntr == 7
    assert "not a fence" in (t.note or "")
    # A transaction request: its reply goes now, in a status query (the fence), never a script.
    t = step(job, report(TX, 12, sequence=5), 1.0, POLICY)
    assert t.commands == (SendQuery(),) and t.job.replies == (5,)
    sent = step(t.job, Sent(MessageKind.QUERY, 8), 1.0, POLICY).job
    assert sent.reply_carriers == ((8, (5,)),) and sent.script_cntr == 7
    # The query's PoR (the fence): counter 12 -> exactly the last 2 resent, the reply proven answered.
    por = PorReport(TAR, 8, 0, CounterReport(12, 12), 0x9000, 1)
    t = step(sent, PorArrived(por), 2.0, POLICY)
    assert t.commands == (SendScript(2, 2),) and t.job.replies == () and t.job.counter_path == "query"


def test_card_message_showing_the_whole_script_ran_settles_the_job() -> None:
    t = step(waiting_on_script(), report(TX, 14, sequence=3), 1.0, POLICY)
    assert t.job.phase is Phase.DONE and t.job.applied == 4 and t.job.counter_path == "transaction"
    assert SendReply((3,)) in t.commands  # message 2 alone: nothing is missing


def test_card_message_without_script_in_flight_is_authoritative() -> None:
    # First contact: the counter replaces the status query; the script follows.
    job = step(Job(n=2), Begin(), 0.0, POLICY).job
    job = step(job, Sent(MessageKind.QUERY, 1), 0.0, POLICY).job
    t = step(job, report(INFO, 30), 1.0, POLICY)
    assert t.commands == (SendScript(0, 2),) and t.job.confirmed == 30
    assert t.job.counter_path == "information"
    # An older report delivered late (counter below CA) changes nothing.
    sending = t.job
    t = step(sending, report(INFO, 29, cntr=2), 1.0, POLICY)
    assert t.commands == () and t.job.confirmed == 30 and t.job.mismatches == 0
    # Ahead of CA with nothing in flight: a mismatch, recorded, never a resend.
    t = step(sending, report(INFO, 31, cntr=3), 1.0, POLICY)
    assert t.commands == () and t.job.mismatches == 1


def test_transaction_reply_rides_on_the_next_script_and_is_proven_by_its_por() -> None:
    job = step(Job(n=2, confirmed=0, start_counter=0), Begin(), 0.0, POLICY).job  # SENDING script
    job = step(job, report(TX, 0, sequence=9), 0.0, POLICY).job
    assert job.phase is Phase.SENDING and job.replies == (9,)
    job = step(job, Sent(MessageKind.SCRIPT, 1), 0.0, POLICY).job
    assert job.reply_carriers == ((1, (9,)),)
    por = PorReport(TAR, 1, 0, CounterReport(0, 2), 0x9000, 5)
    t = step(job, PorArrived(por), 1.0, POLICY)
    assert t.job.phase is Phase.DONE and t.job.replies == () and t.commands[0] == t.commands[-1]


def test_terminal_job_answers_a_request_alone() -> None:
    done = replace(Job(n=1, confirmed=1, applied=1), phase=Phase.DONE)
    t = step(done, report(TX, 1, sequence=2), 0.0, POLICY)
    assert t.commands == (SendReply((2,)),) and t.job.phase is Phase.DONE
    t = step(done, report(INFO, 1), 0.0, POLICY)
    assert t.commands == () and t.job.mo_reports == 1


def test_resume_keeps_owed_replies_and_fences_with_a_query() -> None:
    job = step(waiting_on_script(), report(INFO, 12), 1.0, POLICY).job
    job = replace(job, replies=(4,))
    row = _row(job)
    resumed = _resume(row, 4, job.confirmed)
    assert resumed.script_cntr == 7 and resumed.replies == (4,)
    t = step(resumed, Begin(), 0.0, POLICY)
    assert t.commands == (SendQuery(),)


def _row(job: Job) -> JobRow:
    return JobRow(
        campaign="c",
        iccid="i",
        tar=TAR.hex(),
        state=job.phase.value,
        pending=[],
        n=job.n,
        applied=job.applied,
        base=job.confirmed,
        start_counter=job.start_counter,
        attempts=job.attempts,
        queries=job.queries,
        resent_actions=job.resent_actions,
        outstanding=list(job.outstanding_cntrs),
        counter_path=job.counter_path,
        statuses=list(job.statuses),
        extra=_job_extra(job),
    )


# --------------------------------------------------------------------------- the state machine


@dataclass
class TearingCard(CardSim):
    """CardSim plus tearing (CNTR and k counted actions saved, then power lost: no PoR), the
    TRANSACTION REPLYs it received, and card messages carrying its counter."""

    tear: int | None = None
    replies: list[int] = field(default_factory=list)
    sequence: int = 0
    mo_cntr: int = 0

    def receive(self, packet: bytes) -> bytes | None:
        header = parse_command_header(packet)
        opened = open_command_packet(header, self.keys)
        assert opened.checksum_valid is True
        if opened.cntr <= self.cntr:
            tear, self.tear = self.tear, None
            return self._error(header.tar, opened.cntr, 0x02) if tear is None else None
        self.cntr = opened.cntr  # saved before any command runs
        commands = decode_compact_commands(opened.data)
        before = self.action_counter
        tear, self.tear = self.tear, None
        executed, sw, counted = 0, 0x9000, 0
        for apdu in commands:
            if tear is not None and is_counted(apdu.ins) and counted == tear:
                return None  # power cut: the rest never runs, no PoR
            executed += 1
            if apdu.ins == 0x36:
                self.replies.append(int.from_bytes(apdu.data, "big"))
            failing = self.fail(apdu)
            sw = failing if failing is not None else 0x9000
            if not is_success_sw(sw):
                break
            if is_counted(apdu.ins):
                counted += 1
                self.action_counter += 1
                self.journal.append((self.action_counter, apdu.encode_t0()))
        if tear is not None:
            return None  # the cut came after the last action
        data = (CompactResponse(executed, sw).encode() if commands else b"") + CounterReport(
            before, self.action_counter
        ).encode()
        response = ResponsePacket(header.tar, opened.cntr, 0x00, data)
        return encode_response_packet(response, header.spi, header.kic, header.kid, self.keys)

    def card_message(self, kind: CardMessageKind) -> bytes:
        if kind is TX:
            self.sequence += 1
        self.mo_cntr += 1
        return mo_user_data(kind, self.sequence, self.action_counter, self.mo_cntr)


class CardMessagesUnderLoss(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.actions = make_actions(4)
        self.card = TearingCard(aes_keys())
        self.keys = self.card.keys
        self.now = 0.0
        self.cntr = 0  # the store's last reserved CNTR (persistent)
        self.mo_last: int | None = None  # the store's last accepted MO CNTR (persistent)
        self.job = Job(n=4, confirmed=0, start_counter=0)
        self.mt: list[bytes] = []
        self.por: list[bytes] = []
        self.mo: list[bytes] = []
        self.accepted_requests: set[int] = set()
        self.replies_built: set[int] = set()  # sequences put into some command packet
        self.lost_something = False
        self.apply(step(self.job, Begin(), self.now, POLICY))

    # the shell, as service.py does it: reserve (persist) a CNTR, build, then report Sent
    def apply(self, t: Transition) -> None:
        self.job = t.job
        for command in t.commands:
            if isinstance(command, SendReply):
                self.cntr += 1
                self.replies_built.update(command.sequences)
                self.mt.append(
                    build_packet(self.keys, SECURITY, self.cntr, _reply_actions(command.sequences))
                )
        while self.job.phase is Phase.SENDING:
            kind = self.job.next_kind
            assert kind is not None
            self.cntr += 1
            actions = self.actions[self.job.applied :] if kind is MessageKind.SCRIPT else ()
            actions = (*_reply_actions(self.job.replies), *actions)
            self.replies_built.update(self.job.replies)
            self.mt.append(build_packet(self.keys, SECURITY, self.cntr, actions))
            self.job = step(self.job, Sent(kind, self.cntr), self.now, POLICY).job
            # The SMSC takes it at once here: the attempt and its timer start (campaigns.md §6.2).
            self.job = step(self.job, Accepted(self.cntr), self.now, POLICY).job

    def feed(self, event: object) -> None:
        self.apply(step(self.job, event, self.now, POLICY))  # type: ignore[arg-type]

    def pick(self, data: st.DataObject, queue: list[bytes], keep: bool) -> bytes:
        index = data.draw(st.integers(0, len(queue) - 1))
        if queue is self.mt and index:
            self.lost_something = True  # reordered: an older packet will meet "CNTR low"
        return queue[index] if keep else queue.pop(index)

    @precondition(lambda self: self.mt)
    @rule(data=st.data(), duplicate=st.booleans())
    def deliver_command(self, data: st.DataObject, duplicate: bool) -> None:
        # Any queued packet, not only the oldest: late delivery after newer packets.
        por = self.card.receive(self.pick(data, self.mt, duplicate))
        if por is not None:
            self.por.append(por)

    @precondition(lambda self: self.mt)
    @rule(data=st.data(), k=st.integers(0, 3))
    def tear_on_delivery(self, data: st.DataObject, k: int) -> None:
        self.card.tear = k
        self.deliver_command(data, False)
        self.card.tear = None

    @precondition(lambda self: self.mt or self.por or self.mo)
    @rule(data=st.data(), which=st.sampled_from(["mt", "por", "mo"]))
    def lose(self, data: st.DataObject, which: str) -> None:
        queue = getattr(self, which)
        if queue:
            self.pick(data, queue, False)
            self.lost_something = True

    @precondition(lambda self: self.por)
    @rule(data=st.data(), duplicate=st.booleans())
    def deliver_por(self, data: st.DataObject, duplicate: bool) -> None:
        report = verify_por(self.pick(data, self.por, duplicate), SECURITY, self.keys)
        assert isinstance(report, PorReport)
        self.feed(PorArrived(report))

    @rule(kind=st.sampled_from([TX, INFO]))
    def card_sends_message(self, kind: CardMessageKind) -> None:
        self.mo.append(self.card.card_message(kind))

    @precondition(lambda self: self.mo)
    @rule(data=st.data(), duplicate=st.booleans())
    def deliver_card_message(self, data: st.DataObject, duplicate: bool) -> None:
        self.receive_mo(self.pick(data, self.mo, duplicate))

    def receive_mo(self, ud: bytes) -> None:
        opened = open_card_message(ud, {1: self.keys})
        assert isinstance(opened, CardReport)
        if not mo_cntr_fresh(self.mo_last, opened.cntr):
            return  # a copy: recorded and ignored by the shell, never processed twice
        self.mo_last = opened.cntr
        if opened.message.kind is TX:
            self.accepted_requests.add(opened.message.sequence)
        self.feed(CardReportArrived(opened))

    @precondition(lambda self: self.job.deadline is not None)
    @rule()
    def time_passes(self) -> None:
        assert self.job.deadline is not None
        self.now = self.job.deadline
        self.feed(DeadlinePassed())

    @rule()
    def server_restarts(self) -> None:
        """SIGKILL + restart: only the persisted row survives (committed before every send)."""
        confirmed = self.job.confirmed
        self.job = _resume(_row(self.job), self.job.n, confirmed)
        if not self.job.phase.terminal:
            self.apply(step(self.job, Begin(), self.now, POLICY))

    @invariant()
    def never_twice_and_in_order(self) -> None:
        ran = [packet[-2] for _, packet in self.card.journal]
        assert ran == list(range(len(ran))), ran
        assert self.job.applied <= len(ran)
        if self.job.confirmed is not None:
            assert self.job.confirmed <= self.card.action_counter

    def teardown(self) -> None:
        for _ in range(1000):
            if self.mo:
                self.receive_mo(self.mo.pop(0))
            elif self.mt:
                por = self.card.receive(self.mt.pop(0))
                if por is not None:
                    self.por.append(por)
            elif self.por:
                report = verify_por(self.por.pop(0), SECURITY, self.keys)
                assert isinstance(report, PorReport)
                self.feed(PorArrived(report))
            elif self.job.deadline is not None and not self.job.phase.terminal:
                self.now = self.job.deadline
                self.feed(DeadlinePassed())
            else:
                break
        assert self.job.phase is Phase.DONE, (self.job.phase, self.job.reason)
        assert [packet[-2] for _, packet in self.card.journal] == [0, 1, 2, 3]
        assert self.job.confirmed == self.card.action_counter == 4 and self.job.applied == 4
        # Message 2: every accepted request answered. While the job runs, the reply rides on every
        # message until a PoR proves it; once the job has ended it is sent once on its own (not
        # retried), so only a lossless, in-order run guarantees the card saw them all.
        assert self.accepted_requests <= self.replies_built
        if not self.lost_something:
            assert self.accepted_requests <= set(self.card.replies), (
                self.accepted_requests,
                self.card.replies,
            )


CardMessagesUnderLoss.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_card_messages_tearing_and_restarts_never_break_exactly_once = CardMessagesUnderLoss.TestCase

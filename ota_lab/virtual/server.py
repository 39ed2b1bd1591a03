"""The OTA server on the virtual clock: the campaign's jobs driven by ``reconciliation.step`` exactly as
:class:`ota_server.service.CampaignRunner` drives them (read it first), with its store and its ESME
replaced by memory and direct calls.

Shared with the SMPP path, unchanged: :func:`ota_server.reconciliation.step` and its ``Policy``
(timeouts, back-off, ``max_attempts``, the fence rule), :func:`~ota_server.reconciliation.verify_por`,
:func:`~ota_server.reconciliation.open_card_message` with the MO replay rule ``mo_cntr_fresh``,
:mod:`ota_server.command_builder` (packets, concatenation references from the campaign's seeded
generator), :mod:`ota_server.por_matcher` (``classify_deliver``, ``PorAssembler``,
``OutstandingIndex`` + ``choose``), the keys derived from the fleet spec, the campaign's
``concurrency`` (jobs open at once) and ``max_messages_per_second`` pacing, and the report format.

Virtual: the CNTR store is an array (one CNTR per card for the campaign's key set; the SMPP path's
SQLite write-ahead has nothing to protect against inside one process), the submit_sm goes straight
to :meth:`VirtualNetwork.submit` as a ``SubmitSm`` object and its answer comes back at once (so the
SMPP window never fills; a throttled submit is retried after the ESME's pause, and a submit during an
SMSC outage waits for the rebind), deliver_sm objects arrive by :meth:`on_deliver`, timers are
virtual-clock events cancelled by version numbers.

Memory: one ``Job`` per card once admitted; a closed one is interned (frozen, and most closed jobs
are equal field for field: they share one object; the others share their status tuples and
reasons). The card's ``PacketKeys`` only while its job is open.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Iterator, Sequence
from typing import Any

from ota_lab.virtual.clock import VirtualClock
from ota_lab.virtual.network import VirtualNetwork
from ota_protocols.apdu import card_commands
from ota_protocols.errors import ConfigError, OtaSimError
from ota_protocols.fleet import DerivedCard, FleetSpec, derive_card, index_of_msisdn
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm
from ota_protocols.smpp.command_status import CommandStatus
from ota_protocols.smpp.pdu_codec import DeliverSm, SubmitSm
from ota_server import command_builder
from ota_server.config import CampaignConfig
from ota_server.model import Action, Card, Keyset, packet_keys_for
from ota_server.por_matcher import (
    CPI_UDH,
    Candidate,
    DeliverKind,
    OutstandingIndex,
    PorAssembler,
    choose,
    classify_deliver,
)
from ota_server.reconciliation import (
    Begin,
    CardReport,
    CardReportArrived,
    DeadlinePassed,
    Event,
    Finish,
    Job,
    MessageKind,
    Phase,
    Policy,
    PorArrived,
    PorReport,
    RejectedPor,
    SendQuery,
    SendReply,
    SendScript,
    Sent,
    SubmitRefused,
    Transition,
    job_replace,
    mo_cntr_fresh,
    open_card_message,
    step,
    verify_por,
)
from ota_server.report import REPORT_STATES, Stats, card_row, state_of, stats_summary

__all__ = ["VirtualOtaServer"]

TIMELINE_BINS = 200
_THROTTLE_PAUSE_S = 0.05  # ota_server.esme.EsmeSettings.throttle_pause_s / max_throttle_pause_s
_MAX_THROTTLE_PAUSE_S = 2.0


def _reply_actions(sequences: Sequence[int]) -> tuple[Action, ...]:
    """TRANSACTION REPLY (accepted) per sequence, as ota_server.service sends message 2."""
    return tuple(
        Action(f"reply {q}", (card_commands.transaction_reply(q, accepted=True),)) for q in sequences
    )


def _keysets(spec: FleetSpec, index: int, derived: DerivedCard | None = None) -> dict[int, Keyset]:
    if derived is None:
        derived = derive_card(spec, index)
    return {
        k.kvn: Keyset(
            kvn=k.kvn,
            kic_algorithm=CipherAlgorithm(k.kic_algorithm),
            kid_algorithm=IntegrityAlgorithm(k.kid_algorithm),
            kic=k.kic,
            kid=k.kid,
        )
        for k in derived.keysets
    }


class _Open:
    """What an open job needs beyond its Job: keys, timer version, the kinds of its CNTRs."""

    __slots__ = ("keys", "version")

    def __init__(self, keys: PacketKeys) -> None:
        self.keys = keys
        self.version = 0


class VirtualOtaServer:
    def __init__(
        self,
        config: CampaignConfig,
        fleet: FleetSpec,
        network: VirtualNetwork,
        clock: VirtualClock,
        *,
        seed: object,
        system_id: str,
    ) -> None:
        self.config = config
        self.fleet = fleet
        self.network = network
        self.clock = clock
        self.rng = random.Random(seed)
        self.system_id = system_id
        self.policy = Policy(
            por_timeout_s=config.retry.por_timeout_s,
            max_attempts=config.retry.max_attempts,
            backoff_s=config.retry.backoff_s,
            max_backoff_s=config.retry.max_backoff_s,
        )
        self.security = config.security
        self.tar_hex = config.security.tar.hex()
        self.actions: tuple[Action, ...] = config.actions
        self.stats = Stats()
        n = len(self.actions)
        base = fleet.issued_action_counter
        self._template_job = Job(n=n, confirmed=base, start_counter=base)
        self.first = fleet.first_index
        self.count = fleet.count
        self._jobs: list[Job | None] = [None] * fleet.count
        self._cntr = array("q", bytes(8 * fleet.count))  # last CNTR per card, the campaign's key set
        self._open: dict[int, _Open] = {}
        self._started = bytearray(fleet.count)
        self._next_admit = 0
        self._index: OutstandingIndex[int] = OutstandingIndex()
        self._assembler = PorAssembler(timeout_s=max(60.0, 4 * config.retry.por_timeout_s))
        self._assembler_at: float | None = None
        self._to_send: dict[int, None] = {}
        self._replies_out: list[tuple[int, tuple[int, ...]]] = []
        self._mo_cntrs: dict[tuple[int, str], int] = {}
        self._outbox: list[tuple[int, int, str, bytes, int]] = []  # (token idx, cntr, msisdn, ud, tries)
        self._outbox_head = 0
        self._next_slot = 0.0
        self._pump_at: float | None = None
        self._pause_s = _THROTTLE_PAUSE_S
        self._interned: dict[Any, Any] = {}
        self.finished = False
        self.finished_at: float | None = None
        # Timeline for --plot: TIMELINE_BINS bins over the campaign deadline.
        self.bin_s = max(config.campaign.deadline_s, 1e-9) / TIMELINE_BINS
        self.sent_bins = [0] * TIMELINE_BINS
        self.closed_bins = {state: [0] * TIMELINE_BINS for state in ("confirmed", "partial", "failed")}
        # The pool's memo of derive_card when the server's fleet is the network's (the lab's case).
        self._shared_derive = fleet == network.pool.spec
        sec = self.security
        probe = _keysets(fleet, fleet.first_index) if fleet.count else {}
        if fleet.count and sec.counter_kvn not in probe:
            raise ConfigError(
                "security.kic",
                f"the fleet's cards have no key set {sec.counter_kvn}",
                source=str(config.source),
            )

    def _card_keysets(self, index: int) -> dict[int, Keyset]:
        if self._shared_derive:
            return _keysets(self.fleet, index, self.network.pool.derived(index))
        return _keysets(self.fleet, index)

    # ------------------------------------------------------------------ jobs

    def job(self, index: int) -> Job:
        job = self._jobs[index - self.first]
        return self._template_job if job is None else job

    def outcomes(self) -> Iterator[tuple[int, Job]]:
        for i in range(self.count):
            yield self.first + i, self.job(self.first + i)

    def card(self, index: int) -> Card:
        pool = self.network.pool
        return Card(iccid=pool.iccid(index), imsi="", msisdn=pool.msisdn(index), index=index)

    def start(self) -> None:
        self._admit()
        self._check_finished()

    def _admit(self) -> None:
        limit = self.config.campaign.concurrency
        now = self.clock.now
        while self._next_admit < self.count and len(self._open) < limit:
            i = self._next_admit
            self._next_admit += 1
            if self._started[i]:
                continue  # settled by a card message before its turn
            self._started[i] = 1
            index = self.first + i
            self._open[index] = _Open(packet_keys_for(self._card_keysets(index), self.security))
            self._index.register(self.network.pool.msisdn(index), self.security.tar, index)
            self._apply(index, step(self.job(index), Begin(), now, self.policy))

    def _check_finished(self) -> None:
        if not self._open and self._next_admit >= self.count and not self.finished:
            self.finished = True
            self.finished_at = self.clock.now

    def _step(self, index: int, event: Event) -> None:
        self._apply(index, step(self.job(index), event, self.clock.now, self.policy))

    def _apply(self, index: int, t: Transition) -> None:
        before = self.job(index)
        self._jobs[index - self.first] = t.job
        if not t.changed and not t.note:
            return
        for command in t.commands:
            if isinstance(command, SendScript | SendQuery):
                self._to_send[index] = None
            elif isinstance(command, SendReply):
                self._replies_out.append((index, command.sequences))
            elif isinstance(command, Finish):
                self._finish(index)
        slot = self._open.get(index)
        if t.job.deadline is not None and t.job.deadline != before.deadline and slot is not None:
            slot.version += 1
            self.clock.at(t.job.deadline, self._on_timer, index, slot.version, t.job.deadline)
        if self._to_send or self._replies_out:
            self._flush()

    def _finish(self, index: int) -> None:
        i = index - self.first
        job = self._jobs[i]
        if job is not None:
            # Finished jobs stay for the report, and most are equal field for field (same counters,
            # same statuses): a closed Job is immutable, so equal ones share one object (their
            # status tuples and reasons too, for the others).
            interned = self._interned
            shared = interned.get(job)
            if shared is None:
                statuses = interned.setdefault(job.statuses, job.statuses)
                reason = interned.setdefault(job.reason, job.reason)
                if statuses is not job.statuses or reason is not job.reason:
                    job = job_replace(job, statuses=statuses, reason=reason)
                shared = interned.setdefault(job, job)
            self._jobs[i] = shared
        final = self._jobs[i]
        if final is not None and final.phase in REPORT_STATES:
            b = min(int(self.clock.now / self.bin_s), TIMELINE_BINS - 1)
            self.closed_bins[REPORT_STATES[final.phase]][b] += 1
        if not self._started[i]:
            self._started[i] = 1  # settled by a card message before it was admitted
            self._check_finished()
            return
        self._index.unregister(self.network.pool.msisdn(index), self.security.tar, index)
        self._open.pop(index, None)
        self._admit()
        self._check_finished()

    def _on_timer(self, index: int, version: int, deadline: float) -> None:
        slot = self._open.get(index)
        if slot is None or slot.version != version or self.job(index).deadline != deadline:
            return  # superseded
        self._apply(index, step(self.job(index), DeadlinePassed(), self.clock.now, self.policy))

    # ------------------------------------------------------------------ send (CNTR, packets, pacing)

    def _flush(self) -> None:
        now = self.clock.now
        to_send, self._to_send = self._to_send, {}
        replies_out, self._replies_out = self._replies_out, []
        for index in to_send:
            job = self.job(index)
            if job.phase is not Phase.SENDING or job.next_kind is None:
                continue
            kind = job.next_kind
            cntr = self._reserve(index)
            actions = self.actions[job.applied :] if kind is MessageKind.SCRIPT else ()
            actions = (*_reply_actions(job.replies), *actions)
            self.stats.replies_sent += len(job.replies)
            keys = self._keys(index)
            segments = command_builder.build_user_data(keys, self.security, cntr, actions, rng=self.rng)
            self._apply(index, step(job, Sent(kind, cntr), now, self.policy))
            msisdn = self.network.pool.msisdn(index)
            for ud in segments:
                self._outbox.append((index, cntr, msisdn, ud, 0))
            self.stats.packets_sent += 1
            if kind is MessageKind.SCRIPT:
                self.stats.scripts_sent += 1
            else:
                self.stats.queries_sent += 1
        for index, sequences in replies_out:
            cntr = self._reserve(index)
            segments = command_builder.build_user_data(
                self._keys(index), self.security, cntr, _reply_actions(sequences), rng=self.rng
            )
            msisdn = self.network.pool.msisdn(index)
            for ud in segments:
                self._outbox.append((index, cntr, msisdn, ud, 0))
            self.stats.packets_sent += 1
            self.stats.replies_sent += len(sequences)
        self._pump()

    def _reserve(self, index: int) -> int:
        i = index - self.first
        value = self._cntr[i] + 1
        if value >= 1 << 40:
            raise OtaSimError(f"card {index}: CNTR exhausted (TS 102 225 §5.1.1)")
        self._cntr[i] = value
        return value

    def _keys(self, index: int) -> PacketKeys:
        slot = self._open.get(index)
        if slot is not None:
            return slot.keys
        return packet_keys_for(self._card_keysets(index), self.security)

    def _pump(self) -> None:
        """Hand the outbox to the SMSC: paced by ``max_messages_per_second`` (segments count), held
        while the SMSC is down, throttled submits again after the ESME's doubling pause."""
        now = self.clock.now
        if self._pump_at is not None and self._pump_at > now:
            return
        self._pump_at = None
        rate = self.config.smsc.max_messages_per_second
        s = self.config.smsc
        outbox = self._outbox
        while self._outbox_head < len(outbox):
            if now < self.network.down_until:
                self._schedule_pump(self.network.down_until)
                return
            if rate > 0 and self._next_slot > now:
                self._schedule_pump(self._next_slot)
                return
            index, cntr, msisdn, ud, tries = outbox[self._outbox_head]
            outbox[self._outbox_head] = None  # type: ignore[call-overload]
            self._outbox_head += 1
            if rate > 0:
                self._next_slot = max(self._next_slot, now) + 1.0 / rate
            pdu = SubmitSm(
                source_addr_ton=s.source_addr_ton,
                source_addr_npi=s.source_addr_npi,
                source_addr=s.source_addr,
                dest_addr_ton=s.dest_addr_ton,
                dest_addr_npi=s.dest_addr_npi,
                destination_addr=msisdn,
                esm_class=0x40,
                protocol_id=0x7F,
                data_coding=0xF6,
                registered_delivery=1 if s.registered_delivery else 0,
                short_message=ud,
            )
            self.stats.messages_sent += 1
            self.sent_bins[min(int(now / self.bin_s), TIMELINE_BINS - 1)] += 1
            status, _ = self.network.submit(pdu, self.system_id)
            if status == CommandStatus.ESME_ROK:
                self.stats.submit_accepted += 1
                self._pause_s = _THROTTLE_PAUSE_S
            elif status in (CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL):
                self.stats.throttled += 1
                self.stats.messages_sent -= 1  # sent again below, counted then
                self.sent_bins[min(int(now / self.bin_s), TIMELINE_BINS - 1)] -= 1
                self.clock.at(now + self._pause_s, self._resubmit, (index, cntr, msisdn, ud, tries + 1))
                self._pause_s = min(self._pause_s * 2, _MAX_THROTTLE_PAUSE_S)
            else:
                self.stats.submit_failed += 1
                detail = f"submit_sm refused with status {status:#x}"
                self._step(index, SubmitRefused(cntr, detail))
        if self._outbox_head > 4096 and self._outbox_head * 2 > len(outbox):
            del outbox[: self._outbox_head]
            self._outbox_head = 0

    def _resubmit(self, item: tuple[int, int, str, bytes, int]) -> None:
        self._outbox.append(item)
        self._pump()

    def _schedule_pump(self, at: float) -> None:
        if self._pump_at is None or at < self._pump_at:
            self._pump_at = at
            self.clock.at(at, self._pump_event, at)

    def _pump_event(self, at: float) -> None:
        if self._pump_at == at:
            self._pump_at = None
            self._pump()

    # ------------------------------------------------------------------ deliver_sm

    def on_deliver(self, pdu: DeliverSm) -> None:
        msisdn = pdu.source_addr.lstrip("+")
        user_data = pdu.payload
        kind = classify_deliver(pdu.esm_class, user_data)
        if kind is DeliverKind.RECEIPT:
            self.stats.receipts += 1
            return
        if kind is DeliverKind.OTHER:
            return
        if kind is DeliverKind.CARD_MESSAGE:
            self._on_card_message(msisdn, user_data)
            return
        whole: bytes | None = user_data
        if kind is DeliverKind.POR_SEGMENT:
            try:
                whole = self._assembler.add(msisdn, user_data, self.clock.now)
            except OtaSimError:
                self.stats.por_rejected += 1
                return
            deadline = self._assembler.next_deadline()
            if deadline is not None and (self._assembler_at is None or deadline < self._assembler_at):
                self._assembler_at = deadline
                self.clock.at(deadline, self._expire_segments)
            if whole is None:
                return
        assert whole is not None
        if whole.startswith(CPI_UDH):
            self._on_card_message(msisdn, whole)
            return
        self._on_por(msisdn, whole)
        if self._to_send or self._replies_out:
            self._flush()

    def _expire_segments(self) -> None:
        self._assembler_at = None
        self._assembler.expire(self.clock.now)
        deadline = self._assembler.next_deadline()
        if deadline is not None:
            self._assembler_at = deadline
            self.clock.at(deadline, self._expire_segments)

    def _on_por(self, msisdn: str, user_data: bytes) -> None:
        tar = user_data[6:9]
        candidates: list[Candidate[int, PorReport | RejectedPor]] = []
        for index in self._index.candidates(msisdn, tar):
            report = verify_por(user_data, self.security, self._open[index].keys)
            if isinstance(report, PorReport):
                job = self.job(index)
                candidates.append(
                    Candidate(index, frozenset(job.outstanding_cntrs), report.cntr, report.status, report)
                )
            else:
                candidates.append(Candidate(index, frozenset(), None, None, report))
        chosen = choose(candidates)
        if chosen is None or not isinstance(chosen.report, PorReport):
            if any(isinstance(c.report, RejectedPor) for c in candidates):
                self.stats.por_rejected += 1
            else:
                self.stats.por_unmatched += 1
            return
        self.stats.por_received += 1
        self._step(chosen.job, PorArrived(chosen.report))

    def _on_card_message(self, msisdn: str, user_data: bytes) -> None:
        index = index_of_msisdn(self.fleet, msisdn)
        if index is None:
            self.stats.mo_unmatched += 1
            return
        keys = {kvn: ks.packet_keys() for kvn, ks in self._card_keysets(index).items()}
        opened = open_card_message(user_data, keys)
        if not isinstance(opened, CardReport):
            self.stats.mo_rejected += 1
            return
        key = (index, opened.tar.hex())
        if not mo_cntr_fresh(self._mo_cntrs.get(key), opened.cntr):
            self.stats.mo_replayed += 1
            return
        self._mo_cntrs[key] = opened.cntr
        self.stats.mo_received += 1
        if opened.tar != self.security.tar:
            self.stats.mo_unmatched += 1
            return
        self._step(index, CardReportArrived(opened))

    # ------------------------------------------------------------------ report

    def counts(self) -> dict[str, int]:
        c = {"confirmed": 0, "partial": 0, "failed": 0, "pending": 0}
        for _, job in self.outcomes():
            c[REPORT_STATES.get(job.phase, "pending")] += 1
        return c

    def card_row(self, index: int) -> dict[str, Any]:
        job = self.job(index)
        pool = self.network.pool
        return card_row(pool.iccid(index), pool.msisdn(index), self.tar_hex, state_of(job), job)

    def summary(self, duration_s: float) -> dict[str, Any]:
        counts = self.counts()
        return {
            "cards": self.count,
            "confirmed": counts["confirmed"],
            "partial": counts["partial"],
            "failed": counts["failed"],
            "pending": counts["pending"],
            **stats_summary(self.stats, sum(job.resent_actions for _, job in self.outcomes())),
            "duration_s": round(duration_s, 3),
        }

    def timeline(self) -> dict[str, Any]:
        return {
            "bin_s": self.bin_s,
            "sent": list(self.sent_bins),
            "closed": {k: list(v) for k, v in self.closed_bins.items()},
        }

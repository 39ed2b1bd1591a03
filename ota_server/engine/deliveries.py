"""PURE: what a deliver_sm means to the campaign: a receipt, a PoR (maybe in segments) for one of
its jobs, or a card's own counter report; and which job it is for.

Clauses: smpp-and-peers.md §1.4-§1.6 (deliver_sm of a PoR: UDHI, PID 7F, DCS F6; receipts),
protocols.md §6.4 (match by subscriber + TAR + CNTR; error PoRs may carry CNTR zero), claims 7-9
(card-originated reports; the MO replay rule: a CNTR not above the last accepted is a copy).

Glossary: PoR proof of receipt; MO mobile originated; TAR toolkit application reference; CNTR
replay counter; CA confirmed action counter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ota_protocols.errors import OtaSimError
from ota_server.engine.card_reports import CardReport, mo_cntr_fresh, open_card_message
from ota_server.engine.events import DeliverArrived
from ota_server.engine.job_model import CardReportArrived, PorArrived
from ota_server.engine.job_slots import JobSlot
from ota_server.engine.por_matcher import (
    CPI_UDH,
    Candidate,
    DeliverKind,
    OutstandingIndex,
    PorAssembler,
    choose,
    claims_alone,
    classify_deliver,
)
from ota_server.engine.por_verification import PorReport, RejectedPor, por_tar, verify_por
from ota_server.engine.records import Forwarded, HistoryRow

if TYPE_CHECKING:
    from ota_server.engine.campaign import CampaignEngine

__all__ = ["DeliveryRouter"]


class DeliveryRouter:
    """The engine's inbound side: classifies, reassembles, verifies and routes to a job's step."""

    def __init__(
        self,
        engine: CampaignEngine,
        mo_cntrs: dict[tuple[str, str], int],
        by_msisdn: dict[str, list[JobSlot]],
    ) -> None:
        self.engine = engine
        self.by_msisdn = by_msisdn
        self._mo_cntrs = mo_cntrs
        self._mo_dirty: dict[tuple[str, str], int] = {}
        self._index: OutstandingIndex[int] = OutstandingIndex()
        self._assembler = PorAssembler(timeout_s=max(60.0, 4 * engine.config.retry.por_timeout_s))

    # the engine's bookkeeping

    def register(self, slot: JobSlot) -> None:
        self._index.register(slot.card.msisdn, slot.tar, slot.index)

    def unregister(self, slot: JobSlot) -> None:
        self._index.unregister(slot.card.msisdn, slot.tar, slot.index)

    def learn_mo_cntrs(self, mo_cntrs: Mapping[tuple[str, str], int]) -> None:
        """MO CNTRs the store holds for cards added while running (the replay rule never goes back)."""
        for key, value in mo_cntrs.items():
            self._mo_cntrs[key] = max(self._mo_cntrs.get(key, 0), value)

    @property
    def dirty_mo(self) -> bool:
        return bool(self._mo_dirty)

    def take_dirty_mo(self) -> tuple[tuple[str, str, int], ...]:
        if not self._mo_dirty:
            return ()
        out = tuple((iccid, tar, cntr) for (iccid, tar), cntr in self._mo_dirty.items())
        self._mo_dirty.clear()
        return out

    def next_deadline(self) -> float | None:
        return self._assembler.next_deadline()

    def expire(self, now: float) -> None:
        for expired in self._assembler.expire(now):
            self._note(
                now,
                None,
                "por_segments",
                None,
                "expired",
                f"{expired.originator} ref={expired.reference} "
                f"parts {expired.received_seqs} of {expired.total}",
            )

    def _note(
        self,
        now: float,
        iccid: str | None,
        kind: str,
        cntr: int | None,
        status: str | None,
        detail: str | None,
    ) -> None:
        engine = self.engine
        engine.history(
            HistoryRow(now + engine.wall_offset, engine.name, iccid, "mo", kind, cntr, status, detail)
        )

    # inbound

    def deliver(self, event: DeliverArrived, now: float) -> None:
        stats = self.engine.stats
        msisdn = event.source_addr.lstrip("+")
        kind = classify_deliver(event.esm_class, event.user_data)
        if kind is DeliverKind.RECEIPT:
            stats.receipts += 1
            self._note(now, None, "receipt", None, str(event.message_state), event.receipted_message_id)
            return
        if kind is DeliverKind.OTHER:
            self._note(now, None, "other", None, None, msisdn)
            return
        if self.engine.forwards and msisdn not in self.by_msisdn and not event.relayed:
            # docs/campaigns.md §6.7: a card of another worker (the SMSC gives an ESME's deliver_sm to
            # any of its binds): its owner handles it, raw (segments too: the owner reassembles).
            self.engine.forward(
                Forwarded(
                    msisdn, event.esm_class, event.user_data, event.receipted_message_id, event.message_state
                )
            )
            return
        if kind is DeliverKind.CARD_MESSAGE:
            self._card_message(msisdn, event.user_data, now)
            return
        user_data: bytes | None = event.user_data
        if kind is DeliverKind.POR_SEGMENT:
            try:
                user_data = self._assembler.add(msisdn, event.user_data, now)
            except OtaSimError as exc:
                stats.por_rejected += 1
                self._note(now, None, "por", None, "rejected", str(exc))
                return
            if user_data is None:
                return
        if user_data.startswith(CPI_UDH):
            self._card_message(msisdn, user_data, now)  # a concatenated card message, reassembled
            return
        self._por(msisdn, user_data, now)

    def _por(self, msisdn: str, user_data: bytes, now: float) -> None:
        engine = self.engine
        tar = por_tar(user_data)
        indices = self._index.candidates(msisdn, tar)
        if len(indices) == 1:
            # One job on (MSISDN, TAR), the usual case: what choose() decides for one candidate.
            slot = engine.slots[indices[0]]
            report = verify_por(user_data, slot.security, slot.keys)
            if isinstance(report, RejectedPor):
                self._por_unclaimed(msisdn, tar, slot, report, now)
            elif claims_alone(slot.job.outstanding_cntrs, report.cntr, report.status):
                self._por_for(slot, report, now)
            else:
                self._por_unclaimed(msisdn, tar, None, None, now)
            return
        candidates: list[Candidate[int, PorReport | RejectedPor]] = []
        for index in indices:
            slot = engine.slots[index]
            report = verify_por(user_data, slot.security, slot.keys)
            if isinstance(report, PorReport):
                outstanding = frozenset(slot.job.outstanding_cntrs)
                candidates.append(Candidate(index, outstanding, report.cntr, report.status, report))
            else:
                candidates.append(Candidate(index, frozenset(), None, None, report))
        chosen = choose(candidates)
        if chosen is None or not isinstance(chosen.report, PorReport):
            rejected = next((c for c in candidates if isinstance(c.report, RejectedPor)), None)
            if rejected is None:
                self._por_unclaimed(msisdn, tar, None, None, now)
            else:
                first = engine.slots[candidates[0].job]
                self._por_unclaimed(msisdn, tar, first, rejected.report, now)  # type: ignore[arg-type]
            return
        self._por_for(engine.slots[chosen.job], chosen.report, now)

    def _por_unclaimed(
        self, msisdn: str, tar: bytes, first: JobSlot | None, rejected: RejectedPor | None, now: float
    ) -> None:
        """No job takes the PoR: rejected (``first``: the first candidate, named in the history) when
        a candidate's keys could not trust it, else unmatched."""
        stats = self.engine.stats
        if rejected is not None and first is not None:
            stats.por_rejected += 1
            self._note(now, first.card.iccid, "por", None, "rejected", rejected.reason)
        else:
            stats.por_unmatched += 1
            self._note(now, None, "por", None, "unmatched", f"{msisdn} TAR {tar.hex()}")

    def _por_for(self, slot: JobSlot, report: PorReport, now: float) -> None:
        """The PoR is this job's: counted, noted, stepped."""
        engine = self.engine
        stats = engine.stats
        stats.por_received += 1
        stats.por_status[report.status] += 1
        if slot.job.deadline is not None:  # the PoR timer runs from the SMSC's acceptance
            accepted_at = slot.job.deadline - engine.policy.por_timeout_s
            stats.por_latency.observe(max(0.0, now - accepted_at))
        if engine.audit:
            counter = f" AC {report.counter.before}->{report.counter.after}" if report.counter else ""
            sw = f" SW {report.sw:04X}" if report.sw is not None else ""
            detail = f"{report.meaning}{counter}{sw}"
            self._note(now, slot.card.iccid, "por", report.cntr, f"{report.status:02X}", detail)

        was_terminal = slot.job.phase.terminal
        engine.step_slot(slot, PorArrived(report), now)
        if was_terminal and slot.job.script_cntr is None:
            self.unregister(slot)  # a late PoR settled it: nothing of it can arrive any more
            slot.forget_keys()

    def _card_message(self, msisdn: str, user_data: bytes, now: float) -> None:
        """Claims 7-9: an MO secured packet from a card. Authenticate, apply the replay rule per
        (card, TAR), then hand the counter to the job (the fence rule lives in card_messages.py)."""
        engine = self.engine
        stats = engine.stats
        slots = self.by_msisdn.get(msisdn)
        if not slots:
            stats.mo_unmatched += 1
            self._note(now, None, "card_message", None, "unknown", msisdn)
            return
        iccid = slots[0].card.iccid
        keys = {kvn: ks.packet_keys() for kvn, ks in slots[0].keysets.items()}
        opened = open_card_message(user_data, keys)
        if not isinstance(opened, CardReport):
            stats.mo_rejected += 1
            self._note(now, iccid, "card_message", None, "rejected", opened.reason)
            return
        message = opened.message
        key = (iccid, opened.tar.hex())
        what = f"{opened.label} seq={message.sequence} counter={message.counter} TAR {opened.tar.hex()}"
        last = self._mo_cntrs.get(key)
        if not mo_cntr_fresh(last, opened.cntr):
            stats.mo_replayed += 1
            self._note(
                now,
                iccid,
                "card_message",
                opened.cntr,
                "replayed",
                f"{what}: MO CNTR not above {last}, ignored",
            )
            return
        # Accepted: the new MO CNTR is committed with the job's outcome, before any reply leaves.
        self._mo_cntrs[key] = opened.cntr
        self._mo_dirty[key] = opened.cntr
        stats.mo_received += 1
        # The card's job on that TAR: the open one (a card runs one step at a time), else the last.
        same_tar = [s for s in slots if s.tar == opened.tar and s.override is None]
        open_jobs = [s for s in same_tar if s.started and not s.job.phase.terminal]
        target = open_jobs[0] if open_jobs else (same_tar[-1] if same_tar else None)
        if target is None:
            stats.mo_unmatched += 1
            self._note(now, iccid, "card_message", opened.cntr, "no job", what)
            return
        self._note(now, iccid, "card_message", opened.cntr, "accepted", what)
        engine.step_slot(target, CardReportArrived(opened), now)

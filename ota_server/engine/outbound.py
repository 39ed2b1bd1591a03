"""PURE: the engine's outbound side: CNTR reservation, the command packets, the binds' queues, and
what the SMSC answers about each message.

Clauses: TS 102 225 §5.1.1 (a fresh CNTR per packet, never reused: reserved here, made durable by the
Commit before the packet leaves), smpp-and-peers.md §1.2 (what an OTA submit_sm carries), SMPP 3.4
§4.4.2 (submit_sm_resp), §5.1.3 (throttling statuses), docs/campaigns.md §6.2.

Glossary: token (job slot, CNTR, segment) names one SMS of one packet; bind one ESME session; message 2
the TRANSACTION REPLY (claim 8).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ota_protocols.apdu import card_commands
from ota_protocols.errors import OtaSimError
from ota_protocols.smpp.pdu_codec import SubmitSm
from ota_server import command_builder
from ota_server.engine.events import LinkDown, Submit, SubmitAnswered, SubmitUnanswered, Token
from ota_server.engine.job_model import Accepted, MessageKind, Phase, Sent, SubmitRefused
from ota_server.engine.job_slots import JobSlot
from ota_server.engine.pacing import THROTTLE_STATUSES, BindPacer
from ota_server.engine.records import HistoryRow, Reservation
from ota_server.model import Action, ScriptFormat

if TYPE_CHECKING:
    from ota_server.engine.campaign import CampaignEngine

__all__ = ["CNTR_LIMIT", "Outbound", "relative_validity", "reply_actions"]

CNTR_LIMIT = 1 << 40  # TS 102 225 §5.1.1: five octets
_SCRIPT, _QUERY = MessageKind.SCRIPT.value, MessageKind.QUERY.value  # read once: Enum.value is a property
_SCRIPTS_KEPT = 64  # encoded scripts an Outbound keeps (see Outbound._script)


def reply_actions(sequences: Iterable[int]) -> tuple[Action, ...]:
    """TRANSACTION REPLY (accepted) per sequence: navigation-like, never counted (action-counter.md)."""
    return tuple(
        Action(f"reply {q}", (card_commands.transaction_reply(q, accepted=True),)) for q in sequences
    )


def relative_validity(seconds: float) -> str:
    """SMPP 3.4 §7.1.1 relative time ``YYMMDDhhmmsstnnR`` (years and months left 0)."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"0000{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"


class Outbound:
    """Reserves, builds, queues per bind, releases by the pacers, and reads the SMSC's answers."""

    def __init__(self, engine: CampaignEngine, cntrs: dict[tuple[str, int], int]) -> None:
        self.engine = engine
        config = engine.config
        self.pacers: list[BindPacer[Token, SubmitSm]] = [
            BindPacer(window=config.pacing.window, rate=config.pacing.messages_per_second)
            for _ in range(max(1, config.pacing.binds))
        ]
        self._cntr = cntrs  # (ICCID, KVN) -> last CNTR reserved
        self.reservations: list[Reservation] = []  # made since the last Commit
        self.to_send: dict[int, JobSlot] = {}  # jobs that asked for a message
        self.replies_out: list[tuple[JobSlot, tuple[int, ...]]] = []
        self._segments: dict[tuple[int, int], int] = {}  # (slot, CNTR) -> segments not yet answered
        self._pending: dict[Token, SubmitSm] = {}  # released, not yet answered (window-bounded)
        self._replies: set[tuple[int, int]] = set()  # (slot, CNTR) of message-2-alone packets
        # smpp-and-peers.md §1.2: what every OTA submit_sm of this campaign shares (see _submit_sm).
        s = config.smsc
        validity = config.campaign.validity_period_s
        self._steps = len(config.steps)
        self._scripts: dict[tuple[int, int, bool], tuple[tuple[Action, ...], bytes]] = {}
        self._submit_fields: dict[str, Any] = {
            "source_addr_ton": s.source_addr_ton,
            "source_addr_npi": s.source_addr_npi,
            "source_addr": s.source_addr,
            "dest_addr_ton": s.dest_addr_ton,
            "dest_addr_npi": s.dest_addr_npi,
            "esm_class": 0x40,
            "protocol_id": 0x7F,
            "data_coding": 0xF6,
            "registered_delivery": 1 if s.registered_delivery else 0,
            "validity_period": relative_validity(validity) if validity is not None else "",
        }

    # ------------------------------------------------------------------ reserve and build

    def learn_cntrs(self, cntrs: Mapping[tuple[str, int], int]) -> None:
        """CNTRs the store holds for cards added while running: never below what is known here."""
        for key, value in cntrs.items():
            self._cntr[key] = max(self._cntr.get(key, 0), value)

    def take_reservations(self) -> tuple[Reservation, ...]:
        out = tuple(self.reservations)
        self.reservations.clear()
        return out

    def reserve_and_build(self, now: float) -> None:
        """Every message the jobs asked for: a CNTR each, the packet built, queued on the job's bind."""
        engine = self.engine
        stats = engine.stats
        if engine.state == "paused":
            return  # pause: nothing new leaves; what was decided waits for resume
        to_send, self.to_send = self.to_send, {}
        for slot in to_send.values():
            job = slot.job
            if job.phase is not Phase.SENDING or job.next_kind is None or slot.override is not None:
                continue  # a PoR settled it meanwhile
            kind = job.next_kind
            if engine.cancelling and kind is MessageKind.SCRIPT:
                engine.cancel_open_slot(slot, now)  # cancel: the fence said what ran; the rest never goes
                continue
            actions = slot.actions[job.applied :] if kind is MessageKind.SCRIPT else ()
            script = None
            if job.replies:
                # Message 2 (claim 8): owed TRANSACTION REPLYs first, then exactly the missing actions.
                actions = (*reply_actions(job.replies), *actions)
            elif actions:
                script = self._script(slot, job.applied)
            what = f"actions {job.applied + 1}..{job.n} " if kind is MessageKind.SCRIPT else ""
            step_note = f" step {slot.step + 1}" if self._steps > 1 else ""
            name = _SCRIPT if kind is MessageKind.SCRIPT else _QUERY
            cntr = self._reserve(slot, name, f"{what}TAR {slot.tar_hex}{step_note}")
            stats.replies_sent += len(job.replies)
            self._queue(slot, cntr, actions, script)
            stats.packets_sent += 1
            if kind is MessageKind.SCRIPT:
                stats.scripts_sent += 1
            else:
                stats.queries_sent += 1
            engine.step_slot(slot, Sent(kind, cntr), now)
        replies, self.replies_out = self.replies_out, []
        for slot, sequences in replies:
            # Not tracked by the job (it sends nothing more): its PoR is recorded as unmatched.
            cntr = self._reserve(slot, "reply", "transaction reply " + ",".join(str(q) for q in sequences))
            self._replies.add((slot.index, cntr))
            self._queue(slot, cntr, reply_actions(sequences))
            stats.packets_sent += 1
            stats.replies_sent += len(sequences)

    def _reserve(self, slot: JobSlot, kind: str, detail: str) -> int:
        key = (slot.card.iccid, slot.counter_kvn)
        value = self._cntr.get(key, 0) + 1
        if value >= CNTR_LIMIT:
            raise OtaSimError(
                f"card {slot.card.iccid} key set {slot.counter_kvn}: CNTR exhausted (TS 102 225 §5.1.1)"
            )
        self._cntr[key] = value
        name = self.engine.name
        self.reservations.append(Reservation(slot.card.iccid, slot.counter_kvn, value, name, kind, detail))
        return value

    def _script(self, slot: JobSlot, applied: int) -> bytes:
        """The secured data of the slot's actions from ``applied`` on: the same bytes for every card
        whose step shares the actions (a campaign without per-card parameters: all of them), so
        encoded once per (actions, applied, format). Bounded: cleared past _SCRIPTS_KEPT entries
        (per-card actions from a CSV give one entry per card)."""
        fmt = slot.security.script_format
        key = (id(slot.actions), applied, fmt is ScriptFormat.EXPANDED)  # a bool: Enum hashes in Python
        kept = self._scripts.get(key)
        if kept is not None and kept[0] is slot.actions:
            return kept[1]
        script = command_builder.encode_script(command_builder.script_apdus(slot.actions[applied:]), fmt)
        if len(self._scripts) >= _SCRIPTS_KEPT:
            self._scripts.clear()
        self._scripts[key] = (slot.actions, script)  # the actions kept: their id stays theirs
        return script

    def _queue(
        self, slot: JobSlot, cntr: int, actions: Sequence[Action], script: bytes | None = None
    ) -> None:
        engine = self.engine
        segments = command_builder.build_user_data(
            slot.keys, slot.security, cntr, actions, rng=engine.rng, script=script
        )
        self._segments[(slot.index, cntr)] = len(segments)
        self.pacers[slot.bind].queue(
            ((slot.index, cntr, k), self._submit_sm(slot.card.msisdn, ud)) for k, ud in enumerate(segments)
        )

    def _submit_sm(self, msisdn: str, user_data: bytes) -> SubmitSm:
        """smpp-and-peers.md §1.2: an OTA command is esm_class 0x40 (UDHI), PID 0x7F (SIM data
        download, TS 23.040 §9.2.3.9), DCS 0xF6 (8-bit, class 2: to the SIM, TS 23.038 §4); the
        fields every message shares are read from the config once (``_submit_fields``)."""
        return SubmitSm(destination_addr=msisdn, short_message=user_data, **self._submit_fields)

    # ------------------------------------------------------------------ release (pacing)

    def pump(self, now: float) -> list[Submit]:
        """What the pacers let leave now, minus what no job wants any more (campaigns.md §6.2)."""
        out: list[Submit] = []
        slots = self.engine.slots
        for bind, pacer in enumerate(self.pacers):
            if not pacer.waiting:
                continue
            for token, pdu in pacer.release(now):
                slot = slots[token[0]]
                job = slot.job
                # _wanted, its usual case first: the job waits on this message.
                wanted = (
                    slot.override is None and not job.phase.terminal and token[1] in job.outstanding_cntrs
                ) or self._wanted(slot, token[1])
                if not wanted:
                    pacer.answered()  # dropped, never sent
                    self._segments.pop((token[0], token[1]), None)
                    continue
                self._pending[token] = pdu
                out.append(Submit(bind, token, pdu))
        if out:
            self.engine.stats.submits += len(out)
        return out

    def _wanted(self, slot: JobSlot, cntr: int) -> bool:
        """A queued message leaves only while its job waits on it; message 2 alone while its card's
        job is not cancelled."""
        if slot.override is not None:
            return False
        if (slot.index, cntr) in self._replies:
            return True
        return not slot.job.phase.terminal and cntr in slot.job.outstanding_cntrs

    def next_time(self, now: float) -> float | None:
        best = None
        for pacer in self.pacers:
            if pacer.waiting:
                at = pacer.next_time(now)
                if at is not None and (best is None or at < best):
                    best = at
        return best

    # ------------------------------------------------------------------ the SMSC's answers

    def answered(self, event: SubmitAnswered, now: float) -> None:
        engine = self.engine
        token: Token = event.token  # type: ignore[assignment]
        index, cntr, _ = token
        slot = engine.slots[index]
        pacer = self.pacers[slot.bind]
        pacer.answered()
        engine.stats.submit_status[event.status] += 1
        if event.status in THROTTLE_STATUSES:
            # SMPP 3.4 §5.1.3: not taken; first in line again after the bind's pause.
            engine.stats.throttled += 1
            pacer.throttled(now)
            pacer.requeue_first([(token, self._released(token))])
            return
        self._pending.pop(token, None)
        if event.status == 0:
            engine.stats.submit_accepted += 1
            engine.stats.messages_sent += 1  # "sent" counts what the SMSC took (campaigns.md §6.2)
            engine.note_sent(now)
            pacer.accepted()
            if engine.audit:
                self._history(slot, now, cntr, "accepted", f"message_id={event.message_id}")
            if self._segment_done(index, cntr):
                engine.step_slot(slot, Accepted(cntr), now)
            return
        engine.stats.submit_failed += 1
        detail = f"SMSC refused submit_sm with status {event.status:#010x}"
        self._history(slot, now, cntr, "refused", detail)
        self._segments.pop((index, cntr), None)
        self._replies.discard((index, cntr))
        engine.step_slot(slot, SubmitRefused(cntr, detail), now)

    def unanswered(self, event: SubmitUnanswered, now: float) -> None:
        engine = self.engine
        token: Token = event.token  # type: ignore[assignment]
        index, cntr, _ = token
        slot = engine.slots[index]
        self.pacers[slot.bind].answered()
        self._pending.pop(token, None)
        engine.stats.submit_failed += 1
        self._history(slot, now, cntr, "unknown", event.reason)
        # It may have left: count it as taken, so that the timer, then a status query, decides.
        if self._segment_done(index, cntr):
            engine.step_slot(slot, Accepted(cntr), now)

    def _history(self, slot: JobSlot, now: float, cntr: int, status: str, detail: str) -> None:
        engine = self.engine
        engine.history(
            HistoryRow(
                now + engine.wall_offset,
                engine.name,
                slot.card.iccid,
                "mt",
                "submit_resp",
                cntr,
                status,
                detail,
            )
        )

    def _segment_done(self, index: int, cntr: int) -> bool:
        """The message's last segment answered: the attempt starts (a concatenated packet needs all)."""
        key = (index, cntr)
        left = self._segments.get(key, 1) - 1
        if left <= 0:
            self._segments.pop(key, None)
            self._replies.discard(key)
            return True
        self._segments[key] = left
        return False

    def _released(self, token: Token) -> SubmitSm:
        pdu = self._pending.pop(token, None)
        if pdu is None:  # pragma: no cover - every released token is recorded until answered
            raise OtaSimError(f"no submit_sm recorded for {token}")
        return pdu

    # ------------------------------------------------------------------ the link

    def link_up(self, bind: int) -> float | None:
        """The bind is up again; returns since when it was down (None: it was not)."""
        pacer = self.pacers[bind]
        down_since = pacer.down_since
        pacer.link_up()
        return down_since

    def link_down(self, event: LinkDown, now: float) -> None:
        pacer = self.pacers[event.bind]
        pacer.link_down(now)
        unsent = [t for t in event.unsent if isinstance(t, tuple) and t in self._pending]
        pacer.requeue_first([(t, self._released(t)) for t in unsent])  # type: ignore[arg-type]

    def bound(self, bind: int) -> bool:
        return self.pacers[bind].up

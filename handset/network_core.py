"""The handset network's decisions, without a clock or a transport (PURE).

One core drives both shells: :class:`handset.service.Network` (asyncio, ``loop.call_at``, the SMPP
server) and the virtual-time lab's network (``ota_lab.virtual.network``, an event heap). Every input
carries ``now``; every method returns the actions the shell must carry out, in order:

* :class:`Later` - call :meth:`NetworkCore.fire` with it at ``at`` (an MT reaching the phone, its
  RP report or an MO SMS-SUBMIT reaching the SMSC, an S&F timer, a terminal-store upload, the
  user's next transaction);
* :class:`ToEsme` - hand a deliver_sm (PoR, card message, receipt) to the ESMEs now, preferring the
  bind ``prefer`` (the one that submitted the MT behind it).

Store-and-forward (MT, smpp-and-peers.md §1.6): per phone a FIFO of accepted MT, at most one in
flight. Phone offline, or no RP answer within ``rp_timeout_s`` (the MT or the report was lost) ->
retry after a doubling back-off ``retry_min_s`` .. ``retry_max_s`` until the message's validity runs
out -> receipt EXPIRED. RP-ACK -> DELIVRD, RP-ERROR -> UNDELIV with err = TP-FCS. A report for a
message no longer in flight (a duplicate's, or after a retry) is stale and dropped, as a real MSC
would. TS 23.040 §9.2.3.2: TP-MMS says whether more messages wait for this phone.

MO: an SMS-SUBMIT leaves the phone, or waits in its terminal store while it is out of coverage (or
while older stored ones wait: the store uploads in order; patent claims 7-9). TS 102 223 §6.4.10:
the ME gets its TERMINAL RESPONSE once the SMS is handed to the network or to the store.

Timers are cancelled by generation numbers (``Phone.timer``: 0 = none armed), so a shell never has
to cancel anything: a stale timer fires and does nothing.

Glossary: MT/MO mobile terminated/originated; RP relay protocol (TS 24.011); ME mobile equipment;
ESME the OTA server's SMPP side; S&F store-and-forward.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from handset import activity, smsc_router
from handset.mobile_equipment import (
    Card,
    MobileEquipment,
    MoSubmit,
    Outcome,
    RetryEnvelopeAt,
    RpAck,
    RpError,
    describe,
)
from handset.radio_link import Direction, RadioLink
from ota_protocols.apdu.apdu import StatusWord, sw_bytes
from ota_protocols.errors import DecodeError
from ota_protocols.smpp.pdu_codec import SubmitSm
from ota_protocols.sms.tpdu import SmsDeliverReport, SmsSubmit

if TYPE_CHECKING:
    import random

    from handset.config import HandsetConfig

__all__ = [
    "BASE_COUNTERS",
    "Action",
    "BusyInjectingCard",
    "Later",
    "Mt",
    "NetworkCore",
    "Phone",
    "ToEsme",
]

log = logging.getLogger(__name__)
_INS_ENVELOPE = 0xC2
_TAG_SMS_PP_DOWNLOAD = 0xD1
_BUSY = sw_bytes(StatusWord.TOOLKIT_BUSY)
_MAX_ROUNDS = 64  # a card cannot keep the ME in a proactive loop forever

BASE_COUNTERS = (
    "mt_accepted",
    "mt_transmissions",
    "mt_offline_deferrals",
    "mt_rp_timeouts",
    "mt_delivered",
    "mt_failed",
    "mt_expired",
    "pors",
    "mo_submits",
    "receipts",
    "stale_reports",
    "mo_undecodable",
    "transactions",
    "mo_stored_in_terminal",
    "mo_uploaded",
)

# What a Later asks for when it fires.
DELIVER, REPORT, SUBMIT, TIMER, UPLOAD, TRANSACTION = range(6)
_RP_TIMEOUT, _RETRY = 1, 2  # what an S&F timer does
_FINISH_COUNTER = {"DELIVRD": "mt_delivered", "EXPIRED": "mt_expired"}  # else mt_failed


class Mt(Protocol):
    """An accepted submit_sm on its way to a phone (``handset.smsc_server.MtMessage``)."""

    message_id: str
    submit: SubmitSm
    tpdu: bytes
    origin_system_id: str
    submitted_at: datetime
    expires_at: float
    attempts: int


class BusyInjectingCard:
    """Answers an SMS-PP download ENVELOPE with ``93 00`` as the radio config's
    ``sim_busy_probability`` says (TS 102 221 §10.2.1.1); a MENU SELECTION is the user's, never
    busy. ``rng`` is the network's generator."""

    __slots__ = ("card", "radio", "rng")

    def __init__(self, card: Card, radio: RadioLink, rng: random.Random) -> None:
        self.card = card
        self.radio = radio
        self.rng = rng

    def reset(self) -> bytes:
        reset = getattr(self.card, "reset", None)
        return reset() if callable(reset) else b""

    def stop_after_actions(self, k: int | None) -> None:
        hook = getattr(self.card, "stop_after_actions", None)
        if callable(hook):
            hook(k)

    def exchange(self, c_apdu: bytes) -> bytes:
        if (
            len(c_apdu) > 5
            and c_apdu[1] == _INS_ENVELOPE
            and c_apdu[5] == _TAG_SMS_PP_DOWNLOAD
            and self.radio.inject_busy(self.rng)
        ):
            return _BUSY
        return self.card.exchange(c_apdu)


class Phone:
    """One subscriber: its ME (and card), its MT queue, S&F timer generation, terminal store."""

    __slots__ = (
        "activity_rng",
        "card",
        "last_origin",
        "me",
        "mo_store",
        "msisdn",
        "queue",
        "retries",
        "rng",
        "timer",
        "timer_kind",
        "upload_due",
    )

    def __init__(self, msisdn: str, card: Any, me: MobileEquipment, rng: random.Random | None) -> None:
        self.msisdn = msisdn
        self.card = card
        self.me = me
        # This phone's own generator (offline schedule); None when the radio has no offline model
        # (RadioLink.is_offline draws nothing then).
        self.rng = rng
        self.queue: deque[Mt] = deque()
        self.timer = 0  # generation of the armed S&F timer; 0 = none armed
        self.timer_kind = 0
        self.retries = 0
        self.last_origin: str | None = None
        # Terminal store (patent claims 7-9): MO SMS-SUBMITs made while out of coverage.
        self.mo_store: deque[bytes] = deque()
        self.upload_due = False
        self.activity_rng: random.Random | None = None

    @property
    def busy(self) -> bool:
        """Whether the phone holds anything the network still has to do for it."""
        return bool(self.queue or self.mo_store or self.upload_due or self.activity_rng is not None)


class Later:
    """Call :meth:`NetworkCore.fire` with this at ``at``."""

    __slots__ = ("args", "at", "kind", "phone")

    def __init__(self, at: float, phone: Phone, kind: int, args: tuple[Any, ...]) -> None:
        self.at = at
        self.phone = phone
        self.kind = kind
        self.args = args

    def __repr__(self) -> str:
        return f"Later({self.at!r}, {self.phone.msisdn}, {self.kind}, {len(self.args)} args)"


class ToEsme:
    """Send ``pdu`` (a deliver_sm) to the ESMEs now, preferring the bind ``prefer``."""

    __slots__ = ("pdu", "prefer")

    def __init__(self, pdu: Any, prefer: str | None) -> None:
        self.pdu = pdu
        self.prefer = prefer

    def __repr__(self) -> str:
        return f"ToEsme({type(self.pdu).__name__}, prefer={self.prefer!r})"


Action = Later | ToEsme


class NetworkCore:
    """The store-and-forward core between the SMSC and the phones (module docstring).

    ``rng`` is the network's traffic generator (``random.Random([radio] seed)``); ``date_of(now)``
    turns a ``now`` into the date receipts carry (the wall clock for the real network, a fixed
    epoch plus ``now`` on a virtual clock)."""

    def __init__(
        self,
        config: HandsetConfig,
        radio: RadioLink,
        rng: random.Random,
        *,
        date_of: Callable[[float], datetime],
    ) -> None:
        self.config = config
        self.radio = radio
        self.rng = rng
        self.date_of = date_of
        self.counters = dict.fromkeys(BASE_COUNTERS, 0)
        self.queued = 0
        self._next_timer = 0
        self._tear = self._draw_tear if config.radio.tear_probability > 0 else None
        # What a Later of each kind calls: handler(out, phone, now, *later.args). fire() is the API;
        # the table is public for a shell that runs many events (the virtual lab) to skip a call.
        self.handlers = (
            self._phone_receives,
            self._report_arrives,
            self._submit_arrives,
            self._timer_fires,
            self._upload,
            self._transaction_due,
        )

    def _draw_tear(self) -> int | None:
        return self.radio.draw_tear(self.rng)

    # ------------------------------------------------------------------ inputs

    def fire(self, later: Later, now: float) -> list[Action]:
        """A :class:`Later` this core asked for has come."""
        out: list[Action] = []
        self.handlers[later.kind](out, later.phone, now, *later.args)
        return out

    def submit(self, phone: Phone, message: Mt, now: float) -> list[Action]:
        """An accepted submit_sm for ``phone`` (the SMSC checked subscriber, queue and throttle)."""
        out: list[Action] = []
        phone.queue.append(message)
        self.queued += 1
        self.counters["mt_accepted"] += 1
        phone.last_origin = message.origin_system_id
        if len(phone.queue) == 1 and not phone.timer:
            self._dispatch(out, phone, now)
        return out

    def session(self, phone: Phone, outcomes: list[Outcome], now: float) -> list[Action]:
        """Outcomes of an ME session with no MT behind it (power-on report, menu selection)."""
        out: list[Action] = []
        self._handle_outcomes(out, phone, None, b"", outcomes, now)
        return out

    def start_activity(self, phone: Phone, rng: random.Random, now: float) -> list[Action]:
        """Start ``phone``'s subscriber activity (``[activity]``, :mod:`handset.activity`) with its
        own generator (``activity.phone_seed``)."""
        out: list[Action] = []
        phone.activity_rng = rng
        self._schedule_transaction(out, phone, now)
        return out

    def start_transaction(self, phone: Phone, now: float) -> list[Action]:
        """The user pays: ENVELOPE (MENU SELECTION) to the card, then its transaction request goes
        out as an MO SMS-SUBMIT (or into the terminal store while offline)."""
        out: list[Action] = []
        self._transaction(out, phone, now)
        return out

    # ------------------------------------------------------------------ MT store-and-forward

    def _dispatch(self, out: list[Action], phone: Phone, now: float) -> None:
        """Send the head of the phone's queue, or wait for the phone to come back."""
        phone.timer = 0
        queue = phone.queue
        while queue and queue[0].expires_at <= now:
            self._finish(out, queue.popleft(), "EXPIRED", 0, now)
        if not queue:
            return
        message = queue[0]
        if self.radio.is_offline(phone.msisdn, now, phone.rng):
            self.counters["mt_offline_deferrals"] += 1
            self._retry_later(out, phone, message, now)
            return
        message.attempts += 1
        self.counters["mt_transmissions"] += 1
        tpdu = smsc_router.set_more_messages(message.tpdu, len(queue) > 1)
        for delivery in self.radio.transmit(Direction.MT, phone.msisdn, tpdu, now, self.rng):
            out.append(Later(delivery.at, phone, DELIVER, (message, delivery.payload, 1)))
        self._arm(out, phone, now + self.config.smsc.rp_timeout_s, _RP_TIMEOUT, message)

    def _arm(self, out: list[Action], phone: Phone, at: float, kind: int, message: Mt) -> None:
        self._next_timer += 1
        phone.timer = self._next_timer
        phone.timer_kind = kind
        out.append(Later(at, phone, TIMER, (self._next_timer, message)))

    def _timer_fires(self, out: list[Action], phone: Phone, now: float, generation: int, message: Mt) -> None:
        if phone.timer != generation:
            return  # cancelled
        if phone.timer_kind == _RETRY:
            self._dispatch(out, phone, now)
            return
        phone.timer = 0  # rp timeout
        if not phone.queue or phone.queue[0] is not message:
            return
        self.counters["mt_rp_timeouts"] += 1
        log.info(
            "MT %s to %s: no RP answer within %.1fs",
            message.message_id,
            phone.msisdn,
            self.config.smsc.rp_timeout_s,
        )
        self._retry_later(out, phone, message, now)

    def _retry_later(self, out: list[Action], phone: Phone, message: Mt, now: float) -> None:
        smsc = self.config.smsc
        backoff = min(smsc.retry_max_s, smsc.retry_min_s * 2 ** min(phone.retries, 30))
        phone.retries += 1
        self._arm(out, phone, min(now + backoff, message.expires_at), _RETRY, message)

    def _finish(self, out: list[Action], message: Mt, stat: str, err: int, now: float) -> None:
        self.queued -= 1
        self.counters[_FINISH_COUNTER.get(stat, "mt_failed")] += 1
        submit = message.submit
        if smsc_router.wants_receipt(submit.registered_delivery, success=stat == "DELIVRD"):
            receipt = smsc_router.delivery_receipt(
                submit,
                message_id=message.message_id,
                submit_date=message.submitted_at,
                done_date=self.date_of(now),
                stat=stat,
                err=err,
            )
            self.counters["receipts"] += 1
            out.append(ToEsme(receipt, message.origin_system_id))

    def _report_arrives(
        self, out: list[Action], phone: Phone, now: float, message: Mt, report_tpdu: bytes, fcs: int | None
    ) -> None:
        if not phone.queue or phone.queue[0] is not message or not phone.timer:
            self.counters["stale_reports"] += 1
            return
        phone.timer = 0
        phone.queue.popleft()
        phone.retries = 0
        try:
            report: SmsDeliverReport | None = SmsDeliverReport.decode(report_tpdu, rp_error=fcs is not None)
        except DecodeError as exc:
            log.warning("phone %s: undecodable DELIVER-REPORT %s: %s", phone.msisdn, report_tpdu.hex(), exc)
            report = None
        if report is not None:
            pdu = smsc_router.deliver_report_to_deliver_sm(
                report, msisdn=phone.msisdn, original=message.submit
            )
            if pdu is not None:
                self.counters["pors"] += 1
                out.append(ToEsme(pdu, message.origin_system_id))
        if fcs is None:
            self._finish(out, message, "DELIVRD", 0, now)
        else:
            self._finish(out, message, "UNDELIV", fcs, now)
        if phone.queue:
            self._dispatch(out, phone, now)

    # ------------------------------------------------------------------ phone side

    def _phone_receives(
        self, out: list[Action], phone: Phone, now: float, message: Mt, tpdu: bytes, attempt: int
    ) -> None:
        if phone.me.awaiting_terminal_response:  # pragma: no cover - mo_sent() always follows MoSubmit
            phone.me.mo_sent()
        outcomes = phone.me.receive_sms(tpdu, now, attempt=attempt, tear=self._tear)
        self._handle_outcomes(out, phone, message, tpdu, outcomes, now)

    def _handle_outcomes(
        self,
        out: list[Action],
        phone: Phone,
        message: Mt | None,
        tpdu: bytes,
        outcomes: list[Outcome],
        now: float,
    ) -> None:
        debug = log.isEnabledFor(logging.DEBUG)
        fcs: int | None
        report: bytes
        for _ in range(_MAX_ROUNDS):
            if not outcomes:
                return
            more: list[Outcome] = []
            for outcome in outcomes:
                if debug:
                    log.debug("phone %s: %s", phone.msisdn, describe(outcome))
                # No MT behind a session (activity, power-on): only its MoSubmits need anything.
                match outcome:
                    case RpAck(report_tpdu=report):
                        fcs = None
                    case RpError(report_tpdu=report, fcs=fcs):
                        pass
                    case MoSubmit(tpdu=mo_tpdu):
                        self._send_mo(out, phone, mo_tpdu, now)
                        more += phone.me.mo_sent()
                        continue
                    case RetryEnvelopeAt(at=at, attempt=attempt):
                        if message is not None:
                            out.append(Later(at, phone, DELIVER, (message, tpdu, attempt)))
                        continue
                    case _:
                        continue
                if message is not None:  # RP-ACK / RP-ERROR: the report goes back over the air
                    for d in self.radio.transmit(Direction.MO, phone.msisdn, report, now, self.rng):
                        out.append(Later(d.at, phone, REPORT, (message, d.payload, fcs)))
            outcomes = more
        log.warning("phone %s: proactive session cut after %d rounds", phone.msisdn, _MAX_ROUNDS)

    # ------------------------------------------------------------------ MO, terminal store

    def _send_mo(self, out: list[Action], phone: Phone, tpdu: bytes, now: float) -> None:
        if phone.mo_store or self.radio.is_offline(phone.msisdn, now, phone.rng):
            phone.mo_store.append(tpdu)
            self.counters["mo_stored_in_terminal"] += 1
            self._schedule_upload(out, phone, now)
            return
        self._transmit_mo(out, phone, tpdu, now)

    def _transmit_mo(self, out: list[Action], phone: Phone, tpdu: bytes, now: float) -> None:
        for d in self.radio.transmit(Direction.MO, phone.msisdn, tpdu, now, self.rng):
            out.append(Later(d.at, phone, SUBMIT, (d.payload,)))

    def _schedule_upload(self, out: list[Action], phone: Phone, now: float) -> None:
        if phone.upload_due:
            return
        phone.upload_due = True
        at = self.radio.online_again_at(phone.msisdn)
        out.append(Later(max(at or now, now), phone, UPLOAD, ()))

    def _upload(self, out: list[Action], phone: Phone, now: float) -> None:
        phone.upload_due = False
        if self.radio.is_offline(phone.msisdn, now, phone.rng):
            self._schedule_upload(out, phone, now)
            return
        while phone.mo_store:
            self.counters["mo_uploaded"] += 1
            self._transmit_mo(out, phone, phone.mo_store.popleft(), now)

    def _submit_arrives(self, out: list[Action], phone: Phone, now: float, tpdu: bytes) -> None:
        try:
            submit = SmsSubmit.decode(tpdu)
        except DecodeError as exc:
            self.counters["mo_undecodable"] += 1
            log.warning("phone %s: undecodable SMS-SUBMIT %s: %s", phone.msisdn, tpdu.hex(), exc)
            return
        pdu = smsc_router.sms_submit_to_deliver_sm(submit, msisdn=phone.msisdn)
        if pdu is not None:
            self.counters["mo_submits"] += 1
            out.append(ToEsme(pdu, phone.last_origin))

    # ------------------------------------------------------------------ subscriber activity

    def _schedule_transaction(self, out: list[Action], phone: Phone, after: float) -> None:
        assert phone.activity_rng is not None
        at = activity.next_transaction_at(
            phone.activity_rng, after, self.config.activity.transactions_per_hour
        )
        if at is not None:
            out.append(Later(at, phone, TRANSACTION, (at,)))

    def _transaction_due(self, out: list[Action], phone: Phone, now: float, at: float) -> None:
        self._schedule_transaction(out, phone, at)  # from the scheduled time: the schedule ignores latency
        self._transaction(out, phone, now)

    def _transaction(self, out: list[Action], phone: Phone, now: float) -> None:
        self.counters["transactions"] += 1
        if phone.me.awaiting_terminal_response:  # pragma: no cover - mo_sent() always follows MoSubmit
            phone.me.mo_sent()
        outcomes = phone.me.menu_selection(self.config.activity.menu_item)
        self._handle_outcomes(out, phone, None, b"", outcomes, now)

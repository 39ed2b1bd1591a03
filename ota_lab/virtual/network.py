"""The handset network on the virtual clock: SMSC store-and-forward, radio faults, phones, SIMs.

A port of :class:`handset.service.Network` (read it first) with the clock and the transports
replaced, and nothing else: the same pure parts decide everything -

* :mod:`handset.smsc_router` turns a submit_sm into the SMS-DELIVER TPDU (``build_sms_deliver``,
  validity by ``expiry_seconds``, TP-MMS by ``set_more_messages``) and the phone's DELIVER-REPORT or
  SMS-SUBMIT into the deliver_sm for the ESME, with receipts by ``delivery_receipt``;
* :class:`handset.radio_link.RadioLink` decides loss, bursts, duplicates, reordering, jitter, late
  copies, corruption, offline periods, SIM busy and tearing, with a ``random.Random`` seeded from the
  handset's ``[radio] seed`` exactly as the handset does (one generator for the traffic, one per
  phone for its offline schedule), and applies ``[[radio.script]]`` first;
* :class:`handset.mobile_equipment.MobileEquipment` hands each SMS to the card
  (``sim_emulator.api.SimCard.exchange``) and returns RP-ACK / RP-ERROR / SMS-SUBMITs / busy retries.

What differs: ``loop.call_at`` is :meth:`VirtualClock.at` (timers are cancelled by generation
numbers); the SMPP server is gone (submit_sm / deliver_sm PDU objects are passed directly, see
:mod:`ota_lab.virtual.server`); phones exist only while they have something to do, and their cards
sleep as compact snapshots (:mod:`ota_lab.virtual.cards`). Store-and-forward is unchanged: one MT in
flight per phone, ``rp_timeout_s`` then a doubling back-off ``retry_min_s`` .. ``retry_max_s`` until
the validity ends (receipt EXPIRED), RP-ACK -> DELIVRD, RP-ERROR -> UNDELIV, a report for a message
no longer in flight is stale and dropped. An SMSC restart cuts the ESME for ``outage`` seconds: MO
deliver_sm wait in the SMSC's store and go out on rebind, MT queues survive.

Glossary: MT/MO mobile terminated/originated; RP relay protocol (TS 24.011); ME mobile equipment;
ESME the OTA server's SMPP side; S&F store-and-forward.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from handset import activity, smsc_router
from handset.config import HandsetConfig
from handset.mobile_equipment import MobileEquipment, MoSubmit, Outcome, RetryEnvelopeAt, RpAck, RpError
from handset.radio_link import Direction, RadioLink
from ota_lab.virtual.cards import WARM_CARDS, CardPool
from ota_lab.virtual.clock import VirtualClock
from ota_protocols.apdu.apdu import StatusWord, sw_bytes
from ota_protocols.errors import DecodeError, SmppViolation
from ota_protocols.fleet import index_of_msisdn
from ota_protocols.smpp.command_status import CommandStatus
from ota_protocols.smpp.pdu_codec import DeliverSm, SubmitSm
from ota_protocols.sms.address import Address, Npi, Ton, encode_cat_address
from ota_protocols.sms.tpdu import SmsDeliverReport, SmsSubmit

__all__ = ["EPOCH", "VirtualNetwork"]

log = logging.getLogger(__name__)

# Virtual time 0 as a date, for TP-SCTS, validity periods and receipts (never the wall clock).
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_INS_ENVELOPE = 0xC2
_TAG_SMS_PP_DOWNLOAD = 0xD1
_BUSY = sw_bytes(StatusWord.TOOLKIT_BUSY)


class _BusyPort:
    """handset.service's busy injector: ``93 00`` to an SMS-PP download ENVELOPE with the radio
    config's ``sim_busy_probability`` (the network's generator), else the card answers."""

    __slots__ = ("card", "radio", "rng")

    def __init__(self, card: Any, radio: RadioLink, rng: random.Random) -> None:
        self.card, self.radio, self.rng = card, radio, rng

    def reset(self) -> bytes:
        return self.card.reset()

    def stop_after_actions(self, k: int | None) -> None:
        self.card.stop_after_actions(k)

    def exchange(self, c_apdu: bytes) -> bytes:
        if (
            len(c_apdu) > 5
            and c_apdu[1] == _INS_ENVELOPE
            and c_apdu[5] == _TAG_SMS_PP_DOWNLOAD
            and self.radio.inject_busy(self.rng)
        ):
            return _BUSY
        return self.card.exchange(c_apdu)


class _Mt:
    """An accepted submit_sm on its way to a phone (handset.smsc_server.MtMessage)."""

    __slots__ = ("attempts", "expires_at", "message_id", "origin", "submit", "submitted_at", "tpdu")

    def __init__(
        self, message_id: str, submit: SubmitSm, tpdu: bytes, origin: str, at: float, expires: float
    ) -> None:
        self.message_id = message_id
        self.submit = submit
        self.tpdu = tpdu
        self.origin = origin
        self.submitted_at = at
        self.expires_at = expires
        self.attempts = 0


class _Phone:
    __slots__ = (
        "activity_rng",
        "card",
        "index",
        "last_origin",
        "me",
        "mo_store",
        "msisdn",
        "pending",
        "queue",
        "retries",
        "rng",
        "timer",
        "upload_due",
    )

    def __init__(self, msisdn: str, index: int, card: Any, me: MobileEquipment, rng: random.Random) -> None:
        self.msisdn = msisdn
        self.index = index
        self.card = card
        self.me = me
        self.rng = rng
        self.queue: deque[_Mt] = deque()
        self.timer = 0  # generation of the armed S&F timer; 0 = none armed
        self.retries = 0
        self.last_origin: str | None = None
        self.mo_store: deque[bytes] = deque()
        self.upload_due = False
        self.pending = 0  # events scheduled for this phone and not yet run
        self.activity_rng: random.Random | None = None


class VirtualNetwork:
    """SMSC + radio + phones of a fleet on a virtual clock. See the module docstring."""

    def __init__(
        self,
        config: HandsetConfig,
        pool: CardPool,
        clock: VirtualClock,
        *,
        to_esme: Callable[[DeliverSm], None],
        warm: int = WARM_CARDS,
    ) -> None:
        self.config = config
        self.pool = pool
        self.clock = clock
        self.to_esme_cb = to_esme
        self.radio = RadioLink(config.radio)
        self.rng = random.Random(config.radio.seed)
        self.smsc_address = encode_cat_address(Address(config.smsc.smsc_address, Ton.INTERNATIONAL, Npi.ISDN))
        smsc = config.smsc
        self.router_options = smsc_router.RouterOptions(
            force_dcs=smsc.force_dcs,
            require_pid_7f=smsc.require_pid_7f,
            require_8bit_dcs=smsc.require_8bit_dcs,
        )
        self.phones: dict[str, _Phone] = {}
        self._warm: OrderedDict[str, None] = OrderedDict()
        self._warm_limit = warm
        self._busy = config.radio.sim_busy_probability > 0
        self._tear = self._draw_tear if config.radio.tear_probability > 0 else None
        self._booted = bytearray((pool.spec.count + 7) // 8)  # one bit per card: the phone has booted
        self._next_timer = 0
        self._queued = 0
        self._next_id = 0
        self._tokens = float(smsc.throttle_burst or max(1.0, smsc.throttle_per_s))
        self._stamp = 0.0
        self.down_until = -1.0  # SMSC restart: the ESME is cut off until then
        self._mo_backlog: deque[DeliverSm] = deque()
        self.restarts = 0
        self.counters = {
            "mt_accepted": 0,
            "mt_transmissions": 0,
            "mt_offline_deferrals": 0,
            "mt_rp_timeouts": 0,
            "mt_delivered": 0,
            "mt_failed": 0,
            "mt_expired": 0,
            "pors": 0,
            "mo_submits": 0,
            "receipts": 0,
            "stale_reports": 0,
            "mo_undecodable": 0,
            "transactions": 0,
            "mo_stored_in_terminal": 0,
            "mo_uploaded": 0,
            "submits": 0,
            "submits_rejected": 0,
            "throttled": 0,
        }
        if pool.template.options.info_message_on_power_up or config.activity.enabled:
            # Phones boot at time 0 (handset.service.Network powers every card on and starts the
            # users' activity): when that shows (power-up reports, activity), every phone boots now.
            for index in pool.spec.indices:
                self._phone(pool.msisdn(index))

    # ------------------------------------------------------------------ phones

    def _phone(self, msisdn: str) -> _Phone:
        phone = self.phones.get(msisdn)
        if phone is not None:
            self._warm.pop(msisdn, None)
            return phone
        index = index_of_msisdn(self.pool.spec, msisdn)
        assert index is not None
        card = self.pool.card(index)
        port: Any = _BusyPort(card, self.radio, self.rng) if self._busy else card
        me = MobileEquipment(port, smsc_address=self.smsc_address, options=self.config.me, phone_id=msisdn)
        seed = self.config.radio.seed
        slot, bit = divmod(index - self.pool.first, 8)
        booted = bool(self._booted[slot] >> bit & 1)
        # The phone's own generator (offline schedule), seeded as handset.service does; a phone woken
        # again continues from where its schedule stands.
        rng_seed = f"{seed}/offline/{msisdn}"
        if booted:
            rng_seed += f"/{self.radio.online_again_at(msisdn)}/{self.clock.now!r}"
        phone = _Phone(msisdn, index, card, me, random.Random(rng_seed))
        self.phones[msisdn] = phone
        if not booted:
            # First use = the phone boots (handset.service powers every phone on at start; an
            # untouched phone's boot changes nothing the campaign can see unless the card reports at
            # power-up, and then every phone was booted at time 0 above).
            self._booted[slot] |= 1 << bit
            self._handle_outcomes(phone, None, b"", me.power_on())
            if self.config.activity.enabled:
                seed_a = self.config.activity.seed if self.config.activity.seed is not None else seed
                phone.activity_rng = random.Random(activity.phone_seed(seed_a, msisdn))
                self._schedule_transaction(phone, self.clock.now)
        return phone

    def _later(self, at: float, phone: _Phone, callback: Callable[..., None], *args: Any) -> None:
        phone.pending += 1
        self.clock.at(at, self._run_for, phone, callback, args)

    def _run_for(self, phone: _Phone, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        phone.pending -= 1
        if self.phones.get(phone.msisdn) is not phone:  # pragma: no cover - a busy phone never sleeps
            return
        callback(phone, *args)
        self._maybe_quiet(phone)

    def _maybe_quiet(self, phone: _Phone) -> None:
        if phone.pending or phone.queue or phone.mo_store or phone.activity_rng is not None:
            return
        self._warm[phone.msisdn] = None
        while len(self._warm) > self._warm_limit:
            msisdn, _ = self._warm.popitem(last=False)
            old = self.phones.pop(msisdn)
            self.pool.sleep(old.index)

    # ------------------------------------------------------------------ SMSC side (submit_sm)

    def has_subscriber(self, msisdn: str) -> bool:
        return index_of_msisdn(self.pool.spec, msisdn) is not None

    def submit(self, pdu: SubmitSm, origin: str) -> tuple[int, str]:
        """One submit_sm: (command_status, message_id), as handset.smsc_server._on_submit answers."""
        now = self.clock.now
        smsc = self.config.smsc
        self.counters["submits"] += 1
        if smsc.throttle_per_s > 0:
            burst = float(smsc.throttle_burst or max(1.0, smsc.throttle_per_s))
            self._tokens = min(burst, self._tokens + (now - self._stamp) * smsc.throttle_per_s)
            self._stamp = now
            if self._tokens < 1.0:
                self.counters["throttled"] += 1
                self.counters["submits_rejected"] += 1
                return CommandStatus.ESME_RTHROTTLED, ""
            self._tokens -= 1.0
        if self._queued >= smsc.max_queued_mt:
            self.counters["submits_rejected"] += 1
            return CommandStatus.ESME_RMSGQFUL, ""
        msisdn = pdu.destination_addr.lstrip("+")
        if not self.has_subscriber(msisdn):
            self.counters["submits_rejected"] += 1
            return CommandStatus.ESME_RINVDSTADR, ""
        when = EPOCH + timedelta(seconds=now)
        try:
            tpdu = smsc_router.build_sms_deliver(pdu, scts=when, options=self.router_options)
            validity = smsc_router.expiry_seconds(
                pdu.validity_period, submitted=when, default_s=smsc.default_validity_s
            )
        except SmppViolation as exc:
            self.counters["submits_rejected"] += 1
            return exc.command_status, ""
        self._next_id += 1
        message_id = f"{self._next_id:010X}"
        phone = self._phone(msisdn)
        phone.queue.append(_Mt(message_id, pdu, tpdu, origin, now, now + validity))
        self._queued += 1
        self.counters["mt_accepted"] += 1
        phone.last_origin = origin
        if len(phone.queue) == 1 and not phone.timer:
            self._dispatch(phone)
        self._maybe_quiet(phone)
        return CommandStatus.ESME_ROK, message_id

    @property
    def queued(self) -> int:
        return self._queued

    def _dispatch(self, phone: _Phone) -> None:
        phone.timer = 0
        now = self.clock.now
        while phone.queue and phone.queue[0].expires_at <= now:
            self._finish(phone, phone.queue.popleft(), "EXPIRED", 0)
        if not phone.queue:
            return
        message = phone.queue[0]
        if self.radio.is_offline(phone.msisdn, now, phone.rng):
            self.counters["mt_offline_deferrals"] += 1
            self._retry_later(phone, message)
            return
        message.attempts += 1
        self.counters["mt_transmissions"] += 1
        tpdu = smsc_router.set_more_messages(message.tpdu, len(phone.queue) > 1)
        for delivery in self.radio.transmit(Direction.MT, phone.msisdn, tpdu, now, self.rng):
            self._later(delivery.at, phone, self._phone_receives, message, delivery.payload, 1)
        phone.timer = self._arm(phone, now + self.config.smsc.rp_timeout_s, self._rp_timeout, message)

    def _arm(self, phone: _Phone, at: float, callback: Callable[..., None], *args: Any) -> int:
        self._next_timer += 1
        generation = self._next_timer
        self._later(at, phone, self._timer_fires, generation, callback, args)
        return generation

    def _timer_fires(
        self, phone: _Phone, generation: int, callback: Callable[..., None], args: tuple[Any, ...]
    ) -> None:
        if phone.timer != generation:
            return  # cancelled (handset: TimerHandle.cancel)
        callback(phone, *args)

    def _retry_later(self, phone: _Phone, message: _Mt) -> None:
        smsc = self.config.smsc
        backoff = min(smsc.retry_max_s, smsc.retry_min_s * 2 ** min(phone.retries, 30))
        phone.retries += 1
        at = min(self.clock.now + backoff, message.expires_at)
        phone.timer = self._arm(phone, at, self._retry_due)

    def _retry_due(self, phone: _Phone) -> None:
        self._dispatch(phone)

    def _rp_timeout(self, phone: _Phone, message: _Mt) -> None:
        phone.timer = 0
        if not phone.queue or phone.queue[0] is not message:
            return
        self.counters["mt_rp_timeouts"] += 1
        self._retry_later(phone, message)

    def _finish(self, phone: _Phone, message: _Mt, stat: str, err: int) -> None:
        self._queued -= 1
        key = {"DELIVRD": "mt_delivered", "EXPIRED": "mt_expired"}.get(stat, "mt_failed")
        self.counters[key] += 1
        submit = message.submit
        if smsc_router.wants_receipt(submit.registered_delivery, success=stat == "DELIVRD"):
            receipt = smsc_router.delivery_receipt(
                submit,
                message_id=message.message_id,
                submit_date=EPOCH + timedelta(seconds=message.submitted_at),
                done_date=EPOCH + timedelta(seconds=self.clock.now),
                stat=stat,
                err=err,
            )
            self.counters["receipts"] += 1
            self._to_esme(receipt)

    def _to_esme(self, pdu: DeliverSm) -> None:
        if self.clock.now < self.down_until:
            self._mo_backlog.append(pdu)  # the SMSC's MO store: out on rebind
            return
        self.to_esme_cb(pdu)

    # ------------------------------------------------------------------ SMSC restart

    def restart(self, outage_s: float, rebind_after_s: float) -> None:
        """All SMPP connections cut for ``outage_s``; the ESME rebinds ``rebind_after_s`` later."""
        self.restarts += 1
        self.down_until = self.clock.now + outage_s + rebind_after_s
        self.clock.at(self.down_until, self._rebound)

    def _rebound(self) -> None:
        if self.clock.now < self.down_until:
            return
        while self._mo_backlog:
            self.to_esme_cb(self._mo_backlog.popleft())

    # ------------------------------------------------------------------ phone side

    def _draw_tear(self) -> int | None:
        return self.radio.draw_tear(self.rng)

    def _phone_receives(self, phone: _Phone, message: _Mt, tpdu: bytes, attempt: int) -> None:
        if phone.me.awaiting_terminal_response:  # pragma: no cover - mo_sent() always follows MoSubmit
            phone.me.mo_sent()
        outcomes = phone.me.receive_sms(tpdu, self.clock.now, attempt=attempt, tear=self._tear)
        self._handle_outcomes(phone, message, tpdu, outcomes)

    def _handle_outcomes(
        self, phone: _Phone, message: _Mt | None, tpdu: bytes, outcomes: list[Outcome]
    ) -> None:
        for _ in range(64):  # bounded, as handset.service
            if not outcomes:
                return
            more: list[Outcome] = []
            for outcome in outcomes:
                now = self.clock.now
                if message is None and not isinstance(outcome, MoSubmit):
                    continue
                if isinstance(outcome, RpAck | RpError):
                    assert message is not None
                    fcs = outcome.fcs if isinstance(outcome, RpError) else None
                    for d in self.radio.transmit(
                        Direction.MO, phone.msisdn, outcome.report_tpdu, now, self.rng
                    ):
                        self._later(d.at, phone, self._report_arrives, message, d.payload, fcs)
                elif isinstance(outcome, MoSubmit):
                    self._send_mo(phone, outcome.tpdu, now)
                    more += phone.me.mo_sent()
                elif isinstance(outcome, RetryEnvelopeAt):
                    assert message is not None
                    self._later(outcome.at, phone, self._phone_receives, message, tpdu, outcome.attempt)
            outcomes = more
        log.warning("phone %s: proactive session cut after 64 rounds", phone.msisdn)

    def _send_mo(self, phone: _Phone, tpdu: bytes, now: float) -> None:
        if phone.mo_store or self.radio.is_offline(phone.msisdn, now, phone.rng):
            phone.mo_store.append(tpdu)
            self.counters["mo_stored_in_terminal"] += 1
            self._schedule_upload(phone, now)
            return
        self._transmit_mo(phone, tpdu, now)

    def _transmit_mo(self, phone: _Phone, tpdu: bytes, now: float) -> None:
        for d in self.radio.transmit(Direction.MO, phone.msisdn, tpdu, now, self.rng):
            self._later(d.at, phone, self._submit_arrives, d.payload)

    def _schedule_upload(self, phone: _Phone, now: float) -> None:
        if phone.upload_due:
            return
        phone.upload_due = True
        at = self.radio.online_again_at(phone.msisdn)
        self._later(max(at or now, now), phone, self._upload)

    def _upload(self, phone: _Phone) -> None:
        phone.upload_due = False
        now = self.clock.now
        if self.radio.is_offline(phone.msisdn, now, phone.rng):
            self._schedule_upload(phone, now)
            return
        while phone.mo_store:
            self.counters["mo_uploaded"] += 1
            self._transmit_mo(phone, phone.mo_store.popleft(), now)

    def _report_arrives(self, phone: _Phone, message: _Mt, report_tpdu: bytes, fcs: int | None) -> None:
        if not phone.queue or phone.queue[0] is not message or not phone.timer:
            self.counters["stale_reports"] += 1
            return
        phone.timer = 0
        phone.queue.popleft()
        phone.retries = 0
        try:
            report: SmsDeliverReport | None = SmsDeliverReport.decode(report_tpdu, rp_error=fcs is not None)
        except DecodeError:
            report = None
        if report is not None:
            pdu = smsc_router.deliver_report_to_deliver_sm(
                report, msisdn=phone.msisdn, original=message.submit
            )
            if pdu is not None:
                self.counters["pors"] += 1
                self._to_esme(pdu)
        if fcs is None:
            self._finish(phone, message, "DELIVRD", 0)
        else:
            self._finish(phone, message, "UNDELIV", fcs)
        if phone.queue:
            self._dispatch(phone)

    def _submit_arrives(self, phone: _Phone, tpdu: bytes) -> None:
        try:
            submit = SmsSubmit.decode(tpdu)
        except DecodeError:
            self.counters["mo_undecodable"] += 1
            return
        pdu = smsc_router.sms_submit_to_deliver_sm(submit, msisdn=phone.msisdn)
        if pdu is not None:
            self.counters["mo_submits"] += 1
            self._to_esme(pdu)

    # ------------------------------------------------------------------ subscriber activity

    def _schedule_transaction(self, phone: _Phone, after: float) -> None:
        assert phone.activity_rng is not None
        at = activity.next_transaction_at(
            phone.activity_rng, after, self.config.activity.transactions_per_hour
        )
        if at is not None:
            self._later(at, phone, self._transaction_due, at)

    def _transaction_due(self, phone: _Phone, at: float) -> None:
        self._schedule_transaction(phone, at)
        self.counters["transactions"] += 1
        if phone.me.awaiting_terminal_response:  # pragma: no cover
            phone.me.mo_sent()
        outcomes = phone.me.menu_selection(self.config.activity.menu_item)
        self._handle_outcomes(phone, None, b"", outcomes)

    # ------------------------------------------------------------------ report

    def me_stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for msisdn in sorted(self.phones):
            for key, value in self.phones[msisdn].me.stats.items():
                total[key] = total.get(key, 0) + value
        return total

    def report_counters(self) -> dict[str, Any]:
        smsc: dict[str, Any] = dict(self.counters)
        smsc["restarts"] = self.restarts
        smsc["radio_lost"] = {d.value: n for d, n in self.radio.lost.items()}
        smsc["radio_duplicated"] = {d.value: n for d, n in self.radio.duplicated.items()}
        smsc["radio_corrupted"] = {d.value: n for d, n in self.radio.corrupted.items()}
        smsc["radio_tears_armed"] = self.radio.tears_armed
        smsc["deliveries"] = smsc["mt_transmissions"]
        return smsc

"""The handset application's composition root: config -> cards, phones, radio link, SMSC server.

Concept: :class:`Network` is the store-and-forward core between the SMSC
server and the phones.  Each phone (MSISDN) has a FIFO of accepted MT
messages and at most one in flight.  An MT goes out over the radio link
(:mod:`handset.radio_link`), every :class:`~handset.radio_link.Delivery` runs at
its time with ``loop.call_at``, the phone's ME (:mod:`handset.mobile_equipment`)
hands it to the card, and its RP-ACK/RP-ERROR and SMS-SUBMITs come back over
the radio link to become deliver_sm (:mod:`handset.smsc_router`).

Store-and-forward (MT): phone offline, or no RP answer within
``rp_timeout_s`` (the MT or the report was lost) -> retry after a doubling
back-off (``retry_min_s`` .. ``retry_max_s``) until the message's validity
(submit_sm ``validity_period`` or ``default_validity_s``) runs out -> receipt
EXPIRED.  RP-ACK -> DELIVRD, RP-ERROR -> UNDELIV with err = TP-FCS
(smpp-and-peers.md §1.6).  A report arriving for a message no longer in
flight (a duplicate's, or after a retry) is dropped, as a real MSC would.

Capture (``--pcap``): given a :class:`~handset.capture_writer.PcapWriter`, every
phone's SIM port is wrapped in a :class:`~handset.capture_writer.CapturingCard`
(outside the busy injector, so the capture shows the ``93 00`` the ME saw) and
the SMSC server records its SMPP streams; without one nothing is wrapped.

Glossary: MT/MO mobile terminated/originated; RP relay protocol (TS 24.011);
ME mobile equipment; PoR proof of receipt; S&F store-and-forward.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from datetime import UTC, datetime
from typing import Any

from handset import activity, smsc_router
from handset.capture_writer import CapturingCard, PcapWriter
from handset.config import HandsetConfig
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
from handset.smsc_server import MtMessage, SmscServer
from ota_protocols.apdu.apdu import StatusWord, sw_bytes
from ota_protocols.errors import ConfigError, DecodeError
from ota_protocols.sms.address import Address, Npi, Ton, encode_cat_address
from ota_protocols.sms.tpdu import SmsDeliverReport, SmsSubmit

__all__ = ["HandsetService", "Network", "Phone", "build_cards"]

log = logging.getLogger(__name__)
_DEBUG = logging.DEBUG
_INS_ENVELOPE = 0xC2
_BUSY = sw_bytes(StatusWord.TOOLKIT_BUSY)
_TAG_SMS_PP_DOWNLOAD = 0xD1


class _BusyInjectingCard:
    """Answers an ENVELOPE with 93 00 as the radio config's ``sim_busy_probability`` says."""

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
        # SMS-PP download ENVELOPEs only (D1): a MENU SELECTION is the user's, not the network's.
        if (
            len(c_apdu) > 5
            and c_apdu[1] == _INS_ENVELOPE
            and c_apdu[5] == _TAG_SMS_PP_DOWNLOAD
            and self.radio.inject_busy(self.rng)
        ):
            return _BUSY
        return self.card.exchange(c_apdu)


class Phone:
    __slots__ = (
        "activity_rng",
        "activity_timer",
        "card",
        "last_origin",
        "me",
        "mo_store",
        "msisdn",
        "queue",
        "retries",
        "rng",
        "timer",
        "upload_timer",
    )

    def __init__(self, msisdn: str, card: Any, me: MobileEquipment, rng: random.Random) -> None:
        self.msisdn = msisdn
        self.card = card
        self.me = me
        self.rng = rng  # this phone's own generator (offline schedule)
        self.queue: deque[MtMessage] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.retries = 0
        self.last_origin: str | None = None
        # Terminal store (patent claims 7-9: "transactions stored in the terminal"): MO SMS-SUBMITs
        # made while out of coverage, uploaded in order when the phone is back.
        self.mo_store: deque[bytes] = deque()
        self.upload_timer: asyncio.TimerHandle | None = None
        self.activity_rng: random.Random | None = None
        self.activity_timer: asyncio.TimerHandle | None = None


class Network:
    """The radio network: phones, their MT queues and the radio link.  See the module docstring."""

    def __init__(
        self,
        config: HandsetConfig,
        cards: list[Any],
        loop: asyncio.AbstractEventLoop,
        *,
        capture: PcapWriter | None = None,
    ) -> None:
        self.config = config
        self.loop = loop
        self.radio = RadioLink(config.radio)
        self.rng = random.Random(config.radio.seed)
        self.server: SmscServer | None = None
        smsc_address = encode_cat_address(Address(config.smsc.smsc_address, Ton.INTERNATIONAL, Npi.ISDN))
        self.phones: dict[str, Phone] = {}
        self._queued = 0
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
        }
        busy = config.radio.sim_busy_probability > 0
        self._tear = self._draw_tear if config.radio.tear_probability > 0 else None
        boot: list[tuple[Phone, list[Outcome]]] = []
        for card in cards:
            msisdn = str(card.msisdn).lstrip("+")
            if msisdn in self.phones:
                raise ConfigError("cards", f"MSISDN {msisdn} given to two cards")
            port: Card = _BusyInjectingCard(card, self.radio, self.rng) if busy else card
            if capture is not None:
                port = CapturingCard(port, capture, loop.time)
            me = MobileEquipment(port, smsc_address=smsc_address, options=config.me, phone_id=msisdn)
            phone = Phone(msisdn, card, me, random.Random(f"{config.radio.seed}/offline/{msisdn}"))
            self.phones[msisdn] = phone
            boot.append((phone, me.power_on()))
        for phone, outcomes in boot:
            # A card may report at power-up (information message, claim 9): sent once the loop runs.
            self._handle_outcomes(phone, None, b"", outcomes)

    # ------------------------------------------------------------------ SMSC side

    def has_subscriber(self, msisdn: str) -> bool:
        return msisdn in self.phones

    @property
    def queued(self) -> int:
        return self._queued

    def submit(self, message: MtMessage) -> None:
        phone = self.phones[message.msisdn]
        phone.queue.append(message)
        self._queued += 1
        self.counters["mt_accepted"] += 1
        phone.last_origin = message.origin_system_id
        if len(phone.queue) == 1 and phone.timer is None:
            self._dispatch(phone)

    def _dispatch(self, phone: Phone) -> None:
        """Send the head of the phone's queue, or wait for the phone to come back."""
        phone.timer = None
        loop_now = self.loop.time()
        while phone.queue and phone.queue[0].expires_at <= loop_now:
            self._finish(phone, phone.queue.popleft(), "EXPIRED", 0)
        if not phone.queue:
            return
        message = phone.queue[0]
        if self.radio.is_offline(phone.msisdn, loop_now, phone.rng):
            self.counters["mt_offline_deferrals"] += 1
            self._retry_later(phone, message)
            return
        message.attempts += 1
        self.counters["mt_transmissions"] += 1
        # TS 23.040 §9.2.3.2: TP-MMS says whether more messages wait for this phone.
        tpdu = smsc_router.set_more_messages(message.tpdu, len(phone.queue) > 1)
        for delivery in self.radio.transmit(Direction.MT, phone.msisdn, tpdu, loop_now, self.rng):
            self.loop.call_at(delivery.at, self._phone_receives, phone, message, delivery.payload, 1)
        phone.timer = self.loop.call_at(
            loop_now + self.config.smsc.rp_timeout_s, self._rp_timeout, phone, message
        )

    def _retry_later(self, phone: Phone, message: MtMessage) -> None:
        smsc = self.config.smsc
        backoff = min(smsc.retry_max_s, smsc.retry_min_s * 2 ** min(phone.retries, 30))
        phone.retries += 1
        at = min(self.loop.time() + backoff, message.expires_at)
        phone.timer = self.loop.call_at(at, self._dispatch, phone)

    def _rp_timeout(self, phone: Phone, message: MtMessage) -> None:
        phone.timer = None
        if not phone.queue or phone.queue[0] is not message:
            return
        self.counters["mt_rp_timeouts"] += 1
        log.info(
            "MT %s to %s: no RP answer within %.1fs",
            message.message_id,
            phone.msisdn,
            self.config.smsc.rp_timeout_s,
        )
        self._retry_later(phone, message)

    def _finish(self, phone: Phone, message: MtMessage, stat: str, err: int) -> None:
        self._queued -= 1
        key = {"DELIVRD": "mt_delivered", "EXPIRED": "mt_expired"}.get(stat, "mt_failed")
        self.counters[key] += 1
        submit = message.submit
        if smsc_router.wants_receipt(submit.registered_delivery, success=stat == "DELIVRD"):
            receipt = smsc_router.delivery_receipt(
                submit,
                message_id=message.message_id,
                submit_date=message.submitted_at,
                done_date=datetime.now(UTC),
                stat=stat,
                err=err,
            )
            self.counters["receipts"] += 1
            self._to_esme(receipt, message.origin_system_id)

    def _to_esme(self, pdu: Any, prefer: str | None) -> None:
        if self.server is not None:
            self.server.deliver_mo(pdu, prefer_system_id=prefer)

    # ------------------------------------------------------------------ phone side

    def _draw_tear(self) -> int | None:
        return self.radio.draw_tear(self.rng)

    def _phone_receives(self, phone: Phone, message: MtMessage, tpdu: bytes, attempt: int) -> None:
        if phone.me.awaiting_terminal_response:  # pragma: no cover - mo_sent() always follows MoSubmit
            phone.me.mo_sent()
        outcomes = phone.me.receive_sms(tpdu, self.loop.time(), attempt=attempt, tear=self._tear)
        self._handle_outcomes(phone, message, tpdu, outcomes)

    def _handle_outcomes(
        self, phone: Phone, message: MtMessage | None, tpdu: bytes, outcomes: list[Outcome]
    ) -> None:
        debug = log.isEnabledFor(_DEBUG)
        for _ in range(64):  # bounded: a card cannot keep the ME in a proactive loop forever
            if not outcomes:
                return
            more: list[Outcome] = []
            for outcome in outcomes:
                if debug:
                    log.debug("phone %s: %s", phone.msisdn, describe(outcome))
                now = self.loop.time()
                if message is None and not isinstance(outcome, MoSubmit):
                    continue  # no MT behind this session (activity, power-on): nothing to answer
                if isinstance(outcome, RpAck | RpError):
                    assert message is not None
                    fcs = outcome.fcs if isinstance(outcome, RpError) else None
                    for d in self.radio.transmit(
                        Direction.MO, phone.msisdn, outcome.report_tpdu, now, self.rng
                    ):
                        self.loop.call_at(d.at, self._report_arrives, phone, message, d.payload, fcs)
                elif isinstance(outcome, MoSubmit):
                    self._send_mo(phone, outcome.tpdu, now)
                    # TS 102 223 §6.4.10: TERMINAL RESPONSE once the SMS is handed to the network
                    # (or, out of coverage, to the terminal's store, which owns it from then on).
                    more += phone.me.mo_sent()
                elif isinstance(outcome, RetryEnvelopeAt):
                    assert message is not None
                    self.loop.call_at(outcome.at, self._phone_receives, phone, message, tpdu, outcome.attempt)
            outcomes = more
        log.warning("phone %s: proactive session cut after 64 rounds", phone.msisdn)

    # ------------------------------------------------------------------ MO, terminal store

    def _send_mo(self, phone: Phone, tpdu: bytes, now: float) -> None:
        """An SMS-SUBMIT leaves the phone, or waits in its terminal store while it is offline
        (or while older stored ones wait: the store uploads in order)."""
        if phone.mo_store or self.radio.is_offline(phone.msisdn, now, phone.rng):
            phone.mo_store.append(tpdu)
            self.counters["mo_stored_in_terminal"] += 1
            self._schedule_upload(phone, now)
            return
        self._transmit_mo(phone, tpdu, now)

    def _transmit_mo(self, phone: Phone, tpdu: bytes, now: float) -> None:
        for d in self.radio.transmit(Direction.MO, phone.msisdn, tpdu, now, self.rng):
            self.loop.call_at(d.at, self._submit_arrives, phone, d.payload)

    def _schedule_upload(self, phone: Phone, now: float) -> None:
        if phone.upload_timer is not None:
            return
        at = self.radio.online_again_at(phone.msisdn)
        phone.upload_timer = self.loop.call_at(max(at or now, now), self._upload, phone)

    def _upload(self, phone: Phone) -> None:
        phone.upload_timer = None
        now = self.loop.time()
        if self.radio.is_offline(phone.msisdn, now, phone.rng):
            self._schedule_upload(phone, now)
            return
        while phone.mo_store:
            self.counters["mo_uploaded"] += 1
            self._transmit_mo(phone, phone.mo_store.popleft(), now)

    # ------------------------------------------------------------------ subscriber activity

    def start_activity(self) -> None:
        """Schedule every phone's transactions (``[activity]``, :mod:`handset.activity`)."""
        config = self.config.activity
        if not config.enabled:
            return
        seed = config.seed if config.seed is not None else self.config.radio.seed
        now = self.loop.time()
        for phone in self.phones.values():
            phone.activity_rng = random.Random(activity.phone_seed(seed, phone.msisdn))
            self._schedule_transaction(phone, now)

    def _schedule_transaction(self, phone: Phone, after: float) -> None:
        assert phone.activity_rng is not None
        at = activity.next_transaction_at(
            phone.activity_rng, after, self.config.activity.transactions_per_hour
        )
        if at is not None:
            phone.activity_timer = self.loop.call_at(at, self._transaction_due, phone, at)

    def _transaction_due(self, phone: Phone, at: float) -> None:
        phone.activity_timer = None
        self._schedule_transaction(phone, at)  # from the scheduled time: the schedule ignores loop latency
        self.start_transaction(phone.msisdn)

    def start_transaction(self, msisdn: str) -> None:
        """The user of ``msisdn`` pays: ENVELOPE (MENU SELECTION) to the card, then its transaction
        request goes out as an MO SMS-SUBMIT (or into the terminal store while offline)."""
        phone = self.phones[msisdn]
        self.counters["transactions"] += 1
        if phone.me.awaiting_terminal_response:  # pragma: no cover - mo_sent() always follows MoSubmit
            phone.me.mo_sent()
        outcomes = phone.me.menu_selection(self.config.activity.menu_item)
        self._handle_outcomes(phone, None, b"", outcomes)

    def close(self) -> None:
        """Cancel the timers that would run forever (activity) and pending uploads."""
        for phone in self.phones.values():
            for timer in (phone.activity_timer, phone.upload_timer):
                if timer is not None:
                    timer.cancel()
            phone.activity_timer = phone.upload_timer = None

    def _report_arrives(self, phone: Phone, message: MtMessage, report_tpdu: bytes, fcs: int | None) -> None:
        if not phone.queue or phone.queue[0] is not message or phone.timer is None:
            self.counters["stale_reports"] += 1
            return
        phone.timer.cancel()
        phone.timer = None
        phone.queue.popleft()
        phone.retries = 0
        try:
            report = SmsDeliverReport.decode(report_tpdu, rp_error=fcs is not None)
        except DecodeError as exc:
            log.warning("phone %s: undecodable DELIVER-REPORT %s: %s", phone.msisdn, report_tpdu.hex(), exc)
            report = None
        if report is not None:
            pdu = smsc_router.deliver_report_to_deliver_sm(
                report, msisdn=phone.msisdn, original=message.submit
            )
            if pdu is not None:
                self.counters["pors"] += 1
                self._to_esme(pdu, message.origin_system_id)
        if fcs is None:
            self._finish(phone, message, "DELIVRD", 0)
        else:
            self._finish(phone, message, "UNDELIV", fcs)
        if phone.queue:
            self._dispatch(phone)

    def _submit_arrives(self, phone: Phone, tpdu: bytes) -> None:
        try:
            submit = SmsSubmit.decode(tpdu)
        except DecodeError as exc:
            self.counters["mo_undecodable"] += 1
            log.warning("phone %s: undecodable SMS-SUBMIT %s: %s", phone.msisdn, tpdu.hex(), exc)
            return
        pdu = smsc_router.sms_submit_to_deliver_sm(submit, msisdn=phone.msisdn)
        if pdu is not None:
            self.counters["mo_submits"] += 1
            self._to_esme(pdu, phone.last_origin)

    def me_stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for phone in self.phones.values():
            for key, value in phone.me.stats.items():
                total[key] = total.get(key, 0) + value
        return total


def build_cards(config: HandsetConfig) -> list[Any]:
    """The SIMs of the config: the fleet from its template, then each ``[[cards]]`` profile."""
    if config.fleet is None and not config.cards:
        raise ConfigError(
            "fleet", "no [fleet] and no [[cards]]: the network has no phones", source=config.source
        )
    try:
        import sim_emulator.api as api
    except ImportError as exc:  # pragma: no cover - the SIM package is part of the distribution
        raise ConfigError("fleet", f"sim_emulator.api unavailable: {exc}", source=config.source) from None
    cards: list[Any] = []
    try:
        if config.fleet is not None:
            spec = config.fleet.spec()
            template_path = config.resolve(config.fleet.card_template)
            if not template_path.exists():
                raise ConfigError("fleet.card_template", f"no such file {str(template_path)!r}")
            template = api.load_card_template(template_path)
            cards += [api.card_from_fleet(spec, i, template) for i in spec.indices]
        for i, entry in enumerate(config.cards):
            profile = config.resolve(entry.profile)
            if not profile.exists():
                raise ConfigError(f"cards[{i}].profile", f"no such file {str(profile)!r}")
            state = str(config.resolve(entry.state)) if entry.state else None
            cards.append(api.load_card(profile, state))
    except ConfigError as exc:
        raise ConfigError(exc.key_path, exc.detail, source=exc.source or config.source) from None
    except OSError as exc:
        raise ConfigError("fleet", f"cannot read a card file: {exc}", source=config.source) from None
    return cards


class HandsetService:
    """Wires cards, phones, the radio link and the SMSC server; owns their lifecycle."""

    def __init__(
        self, config: HandsetConfig, *, cards: list[Any] | None = None, pcap: str | None = None
    ) -> None:
        self.config = config
        self._cards = cards
        self.pcap = pcap
        self.capture: PcapWriter | None = None
        self.network: Network | None = None
        self.server: SmscServer | None = None
        self._restart_task: asyncio.Task[None] | None = None
        self._periodic_task: asyncio.Task[None] | None = None

    async def start(self, *, host: str | None = None, port: int | None = None) -> int:
        loop = asyncio.get_running_loop()
        cards = self._cards if self._cards is not None else build_cards(self.config)
        self._cards = cards
        if self.pcap is not None and self.capture is None:
            self.capture = PcapWriter(self.pcap, loop_now=loop.time())
        self.network = Network(self.config, cards, loop, capture=self.capture)
        self.server = SmscServer(self.config.smsc, self.network)
        self.server.capture = self.capture
        self.network.server = self.server
        bound = await self.server.start(host, port)
        self.network.start_activity()
        if self.config.smsc.restart_every_s > 0:
            self._periodic_task = asyncio.create_task(self._restart_periodically())
        return bound

    # ------------------------------------------------------------------ SMSC restart

    async def restart_smsc(self, outage_s: float | None = None) -> None:
        """Restart the SMSC listener: close every SMPP connection and the listening socket, stay
        down ``outage_s`` (default ``[smsc] restart_outage_s``), listen again on the SAME port.
        Phones, cards, MT queues and the MO store survive. A restart already under way: no-op."""
        if self.server is None:
            raise RuntimeError("restart_smsc() before start()")
        current = asyncio.current_task()
        if (
            self._restart_task is not None
            and not self._restart_task.done()
            and self._restart_task is not current
        ):
            log.warning("SMSC restart already in progress; ignored")
            return
        outage = self.config.smsc.restart_outage_s if outage_s is None else outage_s
        self._restart_task = current
        try:
            await self.server.restart(outage)
        finally:
            self._restart_task = None

    def request_restart(self, outage_s: float | None = None) -> asyncio.Task[None] | None:
        """Start :meth:`restart_smsc` as a task (SIGUSR1); None when one is already running."""
        if self._restart_task is not None and not self._restart_task.done():
            log.warning("SMSC restart already in progress; SIGUSR1 ignored")
            return None
        task = asyncio.get_running_loop().create_task(self.restart_smsc(outage_s))
        self._restart_task = task
        return task

    async def _restart_periodically(self) -> None:
        period = self.config.smsc.restart_every_s
        while True:
            await asyncio.sleep(period)
            task = self.request_restart()
            if task is not None:
                await task

    @property
    def phone_count(self) -> int:
        return len(self.network.phones) if self.network else 0

    async def stop(self) -> None:
        for task in (self._periodic_task, self._restart_task):
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._periodic_task = self._restart_task = None
        if self.network is not None:
            self.network.close()
        if self.server is not None:
            await self.server.stop()
        if self.capture is not None:
            self.capture.close()

    def report(self) -> dict[str, Any]:
        """JSON-able: every card's own report and the network counters."""
        cards = []
        for card in self._cards or []:
            report = getattr(card, "report", None)
            cards.append(report() if callable(report) else {"msisdn": getattr(card, "msisdn", None)})
        smsc: dict[str, Any] = {}
        if self.server is not None:
            smsc.update(self.server.counters)
        if self.network is not None:
            smsc.update(self.network.counters)
            smsc["radio_lost"] = {d.value: n for d, n in self.network.radio.lost.items()}
            smsc["radio_duplicated"] = {d.value: n for d, n in self.network.radio.duplicated.items()}
            smsc["radio_corrupted"] = {d.value: n for d, n in self.network.radio.corrupted.items()}
            smsc["radio_tears_armed"] = self.network.radio.tears_armed
            smsc["me"] = self.network.me_stats()
        # The names the brief's report format uses.
        smsc.setdefault("deliveries", smsc.get("mt_transmissions", 0))
        return {"cards": cards, "smsc": smsc}

"""The handset network on the virtual clock: SMSC store-and-forward, radio faults, phones, SIMs.

The SAME decisions as :class:`handset.service.Network` - both drive :class:`handset.network_core.NetworkCore`
(per-phone MT store-and-forward with one MT in flight, RP timeout / retry / validity, offline
handling, the terminal MO store, receipts, MO routing) - with the clock and the transports replaced:

* :mod:`handset.smsc_router` turns a submit_sm into the SMS-DELIVER TPDU (``build_sms_deliver``,
  validity by ``expiry_seconds``) exactly as ``handset.smsc_server`` does;
* :class:`handset.radio_link.RadioLink` decides every fault with generators seeded as the handset
  seeds them; :class:`handset.mobile_equipment.MobileEquipment` hands each SMS to the real
  ``sim_emulator.api.SimCard``.

What differs: the core's :class:`~handset.network_core.Later` actions go on the
:class:`VirtualClock` instead of ``loop.call_at``; the SMPP server is gone (submit_sm / deliver_sm PDU
objects are passed directly, see :mod:`ota_lab.virtual.server`) and its admission (token bucket,
``max_queued_mt``, unknown subscriber) is modelled here; phones exist only while they have something
to do, and their cards sleep as compact snapshots (:mod:`ota_lab.virtual.cards`), their radio state
forgotten (``RadioLink.forget``). An SMSC restart cuts the ESME for ``outage`` seconds: MO
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
from heapq import heappush
from typing import Any

from handset import activity, smsc_router
from handset.config import HandsetConfig
from handset.mobile_equipment import MobileEquipment
from handset.network_core import Action, BusyInjectingCard, Later, NetworkCore, Phone, ToEsme
from handset.radio_link import RadioLink
from ota_lab.virtual.cards import WARM_CARDS, CardPool
from ota_lab.virtual.clock import VirtualClock
from ota_protocols.apdu.apdu import StatusWord, sw_bytes
from ota_protocols.errors import SmppViolation
from ota_protocols.fleet import index_of_msisdn
from ota_protocols.smpp.command_status import CommandStatus
from ota_protocols.smpp.pdu_codec import DeliverSm, SubmitSm
from ota_protocols.sms.address import Address, Npi, Ton, encode_cat_address

__all__ = ["EPOCH", "VirtualNetwork"]

log = logging.getLogger(__name__)

# Virtual time 0 as a date, for TP-SCTS, validity periods and receipts (never the wall clock).
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_INS_ENVELOPE = 0xC2
_TAG_SMS_PP_DOWNLOAD = 0xD1
_BUSY = sw_bytes(StatusWord.TOOLKIT_BUSY)


class _Mt:
    """An accepted submit_sm on its way to a phone (``handset.network_core.Mt``)."""

    __slots__ = ("attempts", "expires_at", "message_id", "origin_system_id", "submit", "submitted_at", "tpdu")

    def __init__(
        self, message_id: str, submit: SubmitSm, tpdu: bytes, origin: str, at: datetime, expires: float
    ) -> None:
        self.message_id = message_id
        self.submit = submit
        self.tpdu = tpdu
        self.origin_system_id = origin
        self.submitted_at = at
        self.expires_at = expires
        self.attempts = 0


class _Phone(Phone):
    """The core's phone plus what sleeping needs: its card index and the events still scheduled."""

    __slots__ = ("index", "pending")

    def __init__(
        self, msisdn: str, index: int, card: Any, me: MobileEquipment, rng: random.Random | None
    ) -> None:
        super().__init__(msisdn, card, me, rng)
        self.index = index
        self.pending = 0  # events scheduled for this phone and not yet run


def _virtual_date(now: float) -> datetime:
    return EPOCH + timedelta(seconds=now)


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
        traffic_seed: object = None,
    ) -> None:
        self.config = config
        self.pool = pool
        self.clock = clock
        self.to_esme_cb = to_esme
        self.radio = RadioLink(config.radio)
        # The network's traffic generator, seeded as the handset seeds it (a shard: its own seed).
        self.rng = random.Random(config.radio.seed if traffic_seed is None else traffic_seed)
        self.core = NetworkCore(config, self.radio, self.rng, date_of=_virtual_date)
        self._handlers = self.core.handlers
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
        self._offline = config.radio.offline.offline_probability > 0  # phones draw offline periods
        self._booted = bytearray((pool.spec.count + 7) // 8)  # one bit per card: the phone has booted
        self._next_id = 0
        self._tokens = float(smsc.throttle_burst or max(1.0, smsc.throttle_per_s))
        self._stamp = 0.0
        self.down_until = -1.0  # SMSC restart: the ESME is cut off until then
        self.esme_gone = False  # no OTA server bound at all (it crashed): MO waits in the SMSC
        self._mo_backlog: deque[DeliverSm] = deque()
        self.restarts = 0
        self.counters = self.core.counters  # the core's, plus the SMSC's admission below
        self.counters.update(submits=0, submits_rejected=0, throttled=0)
        if pool.template.options.info_message_on_power_up or config.activity.enabled:
            # Phones boot at time 0 (handset.service.Network powers every card on and starts the
            # users' activity): when that shows (power-up reports, activity), every phone boots now.
            for index in pool.spec.indices:
                self._phone(pool.msisdn(index))

    # ------------------------------------------------------------------ phones

    def _phone(self, msisdn: str, index: int | None = None) -> _Phone:
        """The awake phone of ``msisdn`` (``index``: its card index, when the caller has it)."""
        phone = self.phones.get(msisdn)
        if phone is not None:
            self._warm.pop(msisdn, None)
            return phone
        if index is None:
            index = index_of_msisdn(self.pool.spec, msisdn)
        assert index is not None
        card = self.pool.card(index)
        port: Any = BusyInjectingCard(card, self.radio, self.rng) if self._busy else card
        me = MobileEquipment(port, smsc_address=self.smsc_address, options=self.config.me, phone_id=msisdn)
        seed = self.config.radio.seed
        slot, bit = divmod(index - self.pool.first, 8)
        booted = bool(self._booted[slot] >> bit & 1)
        # The phone's own generator (offline schedule), seeded as handset.service does; a phone woken
        # again (its radio state forgotten while asleep) starts a fresh schedule from the wake time.
        # Without an offline model RadioLink.is_offline never draws from it: then there is none.
        rng = None
        if self._offline:
            rng_seed = f"{seed}/offline/{msisdn}"
            if booted:
                rng_seed += f"/{self.clock.now!r}"
            rng = random.Random(rng_seed)
        phone = _Phone(msisdn, index, card, me, rng)
        self.phones[msisdn] = phone
        if not booted:
            # First use = the phone boots (handset.service powers every phone on at start; an
            # untouched phone's boot changes nothing the campaign can see unless the card reports at
            # power-up, and then every phone was booted at time 0 above).
            self._booted[slot] |= 1 << bit
            now = self.clock.now
            self._run(self.core.session(phone, me.power_on(), now))
            if self.config.activity.enabled:
                a = self.config.activity
                rng = random.Random(activity.phone_seed(a.seed if a.seed is not None else seed, msisdn))
                self._run(self.core.start_activity(phone, rng, now))
        return phone

    def _run(self, actions: list[Action]) -> None:
        """Carry out the core's actions: Later -> the event heap, ToEsme -> the ESME (or the store).

        A Later goes on the heap as ``clock.at(later.at, self._fire, later)`` would put it there
        (same time clamp, next sequence number), without the call per event."""
        clock = self.clock
        heap = clock.heap
        fire = self._fire
        for action in actions:
            if type(action) is ToEsme:
                self._to_esme(action.pdu)  # may schedule too: the sequence is read afresh below
            else:
                action.phone.pending += 1  # type: ignore[union-attr]
                at = action.at  # type: ignore[union-attr]
                now = clock.now
                seq = clock.seq = clock.seq + 1
                heappush(heap, (at if at > now else now, seq, fire, (action,)))

    def _fire(self, later: Later) -> None:
        phone: _Phone = later.phone  # type: ignore[assignment]
        phone.pending -= 1
        if self.phones.get(phone.msisdn) is not phone:  # pragma: no cover - a busy phone never sleeps
            return
        actions: list[Action] = []
        self._handlers[later.kind](actions, phone, self.clock.now, *later.args)  # = core.fire(later, now)
        if actions:
            self._run(actions)
        if not phone.pending:
            self._maybe_quiet(phone)

    def _maybe_quiet(self, phone: _Phone) -> None:
        if phone.pending or phone.busy:
            return
        self._warm[phone.msisdn] = None
        while len(self._warm) > self._warm_limit:
            msisdn, _ = self._warm.popitem(last=False)
            old = self.phones.pop(msisdn)
            self.radio.forget(msisdn)
            self.pool.sleep(old.index)

    def sleep_all(self) -> None:
        """Put every quiet warm phone to sleep now (benchmarks: memory of an idle fleet)."""
        while self._warm:
            msisdn, _ = self._warm.popitem(last=False)
            old = self.phones.pop(msisdn)
            self.radio.forget(msisdn)
            self.pool.sleep(old.index)

    # ------------------------------------------------------------------ SMSC side (submit_sm)

    def has_subscriber(self, msisdn: str) -> bool:
        return index_of_msisdn(self.pool.spec, msisdn) is not None

    def _admit(self, now: float) -> int:
        """The SMSC's admission of one submit_sm (token bucket, queue bound): ESME_ROK or the status."""
        smsc = self.config.smsc
        counters = self.counters
        if smsc.throttle_per_s > 0:
            burst = float(smsc.throttle_burst or max(1.0, smsc.throttle_per_s))
            self._tokens = min(burst, self._tokens + (now - self._stamp) * smsc.throttle_per_s)
            self._stamp = now
            if self._tokens < 1.0:
                counters["throttled"] += 1
                counters["submits_rejected"] += 1
                return CommandStatus.ESME_RTHROTTLED
            self._tokens -= 1.0
        if self.core.queued >= smsc.max_queued_mt:
            counters["submits_rejected"] += 1
            return CommandStatus.ESME_RMSGQFUL
        return CommandStatus.ESME_ROK

    def submit(self, pdu: SubmitSm, origin: str) -> tuple[int, str]:
        """One submit_sm: (command_status, message_id), as handset.smsc_server._on_submit answers."""
        now = self.clock.now
        smsc = self.config.smsc
        counters = self.counters
        counters["submits"] += 1
        status = self._admit(now)
        if status:
            return status, ""
        msisdn = pdu.destination_addr.lstrip("+")
        index = index_of_msisdn(self.pool.spec, msisdn)
        if index is None:
            counters["submits_rejected"] += 1
            return CommandStatus.ESME_RINVDSTADR, ""
        when = _virtual_date(now)
        try:
            tpdu = smsc_router.build_sms_deliver(pdu, scts=when, options=self.router_options)
            validity = smsc_router.expiry_seconds(
                pdu.validity_period, submitted=when, default_s=smsc.default_validity_s
            )
        except SmppViolation as exc:
            counters["submits_rejected"] += 1
            return exc.command_status, ""
        self._next_id += 1
        message_id = f"{self._next_id:010X}"
        phone = self._phone(msisdn, index)
        self._run(self.core.submit(phone, _Mt(message_id, pdu, tpdu, origin, when, now + validity), now))
        self._maybe_quiet(phone)
        return CommandStatus.ESME_ROK, message_id

    @property
    def queued(self) -> int:
        return self.core.queued

    def _to_esme(self, pdu: DeliverSm) -> None:
        if self.clock.now < self.down_until or self.esme_gone:
            self._mo_backlog.append(pdu)  # the SMSC's MO store: out on rebind
            return
        self.to_esme_cb(pdu)

    def hold_for_esme(self, pdu: DeliverSm) -> None:
        """A deliver_sm no runner acknowledged (the OTA server was down): kept for the next bind."""
        self._mo_backlog.append(pdu)

    def esme_back(self) -> None:
        """A runner bound again (after a crash): the SMSC's MO store goes out to it, in order."""
        self.esme_gone = False
        if self.clock.now >= self.down_until:
            while self._mo_backlog:
                self.to_esme_cb(self._mo_backlog.popleft())

    # ------------------------------------------------------------------ SMSC restart

    def restart(self, outage_s: float, rebind_after_s: float) -> None:
        """All SMPP connections cut for ``outage_s``; the ESME rebinds ``rebind_after_s`` later."""
        self.restarts += 1
        self.down_until = self.clock.now + outage_s + rebind_after_s
        self.clock.at(self.down_until, self._rebound)

    def _rebound(self) -> None:
        if self.clock.now < self.down_until or self.esme_gone:
            return
        while self._mo_backlog:
            self.to_esme_cb(self._mo_backlog.popleft())

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

"""The handset application's composition root: config -> cards, phones, radio link, SMSC server.

Concept: :class:`Network` is the asyncio shell of the store-and-forward core
between the SMSC server and the phones (:mod:`handset.network_core`, PURE: the
same core drives the virtual-time lab).  Each phone (MSISDN) has a FIFO of accepted MT
messages and at most one in flight.  An MT goes out over the radio link
(:mod:`handset.radio_link`), every :class:`~handset.radio_link.Delivery` runs at
its time (``loop.call_at``, or ``call_soon`` when due), the phone's ME (:mod:`handset.mobile_equipment`)
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
import gc
import logging
import random
from datetime import UTC, datetime
from typing import Any

from handset import activity, network_core
from handset.capture_writer import CapturingCard, PcapWriter
from handset.config import HandsetConfig
from handset.mobile_equipment import Card, MobileEquipment, Outcome
from handset.radio_link import RadioLink
from handset.smsc_server import MtMessage, SmscServer
from ota_protocols.errors import ConfigError
from ota_protocols.sms.address import Address, Npi, Ton, encode_cat_address

__all__ = ["HandsetService", "Network", "Phone", "build_cards"]

log = logging.getLogger(__name__)

# Net allocations between two young GC collections while a service runs (CPython's default: 700).
YOUNG_GC_THRESHOLD = 10_000


class Phone(network_core.Phone):
    """A phone of the asyncio network: the core's phone plus the handles :meth:`Network.close`
    cancels (its activity and terminal-store upload timers) and its S&F timer's handle with the
    generation it was armed with (:meth:`Network._settle`)."""

    __slots__ = ("activity_timer", "sf_generation", "sf_timer", "upload_timer")

    def __init__(self, msisdn: str, card: Any, me: MobileEquipment, rng: random.Random) -> None:
        super().__init__(msisdn, card, me, rng)
        self.upload_timer: asyncio.Handle | None = None
        self.activity_timer: asyncio.Handle | None = None
        self.sf_timer: asyncio.Handle | None = None
        self.sf_generation = 0


class Network:
    """The radio network: phones and their MT queues on the asyncio loop. The decisions are
    :class:`handset.network_core.NetworkCore`'s; this shell runs its :class:`~handset.network_core.Later`
    actions at their time (:meth:`_run`) and its :class:`~handset.network_core.ToEsme` through the
    SMSC server."""

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
        radio = RadioLink(config.radio)
        self.rng = random.Random(config.radio.seed)
        self.core = network_core.NetworkCore(config, radio, self.rng, date_of=_wall_date)
        self.server: SmscServer | None = None
        smsc_address = encode_cat_address(Address(config.smsc.smsc_address, Ton.INTERNATIONAL, Npi.ISDN))
        self.phones: dict[str, Phone] = {}
        busy = config.radio.sim_busy_probability > 0
        boot: list[tuple[Phone, list[Outcome]]] = []
        for card in cards:
            msisdn = str(card.msisdn).lstrip("+")
            if msisdn in self.phones:
                raise ConfigError("cards", f"MSISDN {msisdn} given to two cards")
            port: Card = network_core.BusyInjectingCard(card, radio, self.rng) if busy else card
            if capture is not None:
                port = CapturingCard(port, capture, loop.time)
            me = MobileEquipment(port, smsc_address=smsc_address, options=config.me, phone_id=msisdn)
            phone = Phone(msisdn, card, me, random.Random(f"{config.radio.seed}/offline/{msisdn}"))
            self.phones[msisdn] = phone
            boot.append((phone, me.power_on()))
        for phone, outcomes in boot:
            # A card may report at power-up (information message, claim 9): sent once the loop runs.
            self._run(self.core.session(phone, outcomes, loop.time()))

    @property
    def radio(self) -> RadioLink:
        return self.core.radio

    @radio.setter
    def radio(self, radio: RadioLink) -> None:
        self.core.radio = radio

    @property
    def counters(self) -> dict[str, int]:
        return self.core.counters

    # ------------------------------------------------------------------ the core's actions

    def _run(self, actions: list[network_core.Action]) -> None:
        """Each :class:`~handset.network_core.Later` runs at its time: one already due (a radio
        without delay: the delivery, the report) with ``call_soon``, in the order given, without a
        timer in the loop's heap (whose pushes and pops, among the phones' RP timers, cost more
        than the rest of this shell per message); a later one with ``call_at``."""
        loop = self.loop
        now = loop.time()
        for action in actions:
            if isinstance(action, network_core.ToEsme):
                if self.server is not None:
                    self.server.deliver_mo(action.pdu, prefer_system_id=action.prefer)
                continue
            if action.at <= now:
                handle: asyncio.Handle = loop.call_soon(self._fire, action)
            else:
                handle = loop.call_at(action.at, self._fire, action)
            phone = action.phone
            assert isinstance(phone, Phone)
            if action.kind == network_core.UPLOAD:
                phone.upload_timer = handle
            elif action.kind == network_core.TRANSACTION:
                phone.activity_timer = handle
            elif action.kind == network_core.TIMER:
                if phone.sf_timer is not None:  # one S&F timer per phone: the new one replaces it
                    phone.sf_timer.cancel()
                phone.sf_timer, phone.sf_generation = handle, action.args[0]

    def _fire(self, later: network_core.Later) -> None:
        phone = later.phone
        assert isinstance(phone, Phone)
        if later.kind == network_core.UPLOAD:
            phone.upload_timer = None
        elif later.kind == network_core.TRANSACTION:
            phone.activity_timer = None
        elif later.kind == network_core.TIMER and later.args[0] == phone.sf_generation:
            phone.sf_timer = None
        self._run(self.core.fire(later, self.loop.time()))
        self._settle(phone)

    @staticmethod
    def _settle(phone: Phone) -> None:
        """The core disarmed the phone's S&F timer (the RP answer came, the MT is done): cancel its
        handle now. Fired, it would find its generation stale and do nothing (the core's own
        cancellation); meanwhile it held the MT and its PDUs for ``rp_timeout_s``, and with them
        every MT of the last 30 s survived into the oldest GC generation, whose full collections
        walked them (a tenth of the network's CPU at 10^4 cards in benchmarks.e2e)."""
        handle = phone.sf_timer
        if handle is not None and phone.timer != phone.sf_generation:
            handle.cancel()
            phone.sf_timer = None

    # ------------------------------------------------------------------ SMSC side

    def has_subscriber(self, msisdn: str) -> bool:
        return msisdn in self.phones

    @property
    def queued(self) -> int:
        return self.core.queued

    def submit(self, message: MtMessage) -> None:
        phone = self.phones[message.msisdn]
        self._run(self.core.submit(phone, message, self.loop.time()))
        self._settle(phone)

    # ------------------------------------------------------------------ subscriber activity

    def start_activity(self) -> None:
        """Schedule every phone's transactions (``[activity]``, :mod:`handset.activity`)."""
        config = self.config.activity
        if not config.enabled:
            return
        seed = config.seed if config.seed is not None else self.config.radio.seed
        now = self.loop.time()
        for phone in self.phones.values():
            rng = random.Random(activity.phone_seed(seed, phone.msisdn))
            self._run(self.core.start_activity(phone, rng, now))

    def start_transaction(self, msisdn: str) -> None:
        """The user of ``msisdn`` pays: ENVELOPE (MENU SELECTION) to the card, then its transaction
        request goes out as an MO SMS-SUBMIT (or into the terminal store while offline)."""
        self._run(self.core.start_transaction(self.phones[msisdn], self.loop.time()))

    def close(self) -> None:
        """Cancel the timers that would run forever (activity) and pending uploads."""
        for phone in self.phones.values():
            for timer in (phone.activity_timer, phone.upload_timer):
                if timer is not None:
                    timer.cancel()
            phone.activity_timer = phone.upload_timer = None

    def me_stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for phone in self.phones.values():
            for key, value in phone.me.stats.items():
                total[key] = total.get(key, 0) + value
        return total


def _wall_date(now: float) -> datetime:
    """A receipt's done date on the real network: the wall clock (``now`` is the loop's time)."""
    return datetime.now(UTC)


def build_cards(config: HandsetConfig) -> list[Any]:
    """The SIMs of the config: the fleet from its template, then each ``[[cards]]`` entry (a profile,
    or a card in a PC/SC reader)."""
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
            if entry.reader is not None:
                cards.append(_pcsc_card(entry.reader, entry.msisdn or "", f"cards[{i}].sim"))
                continue
            assert entry.profile is not None  # CardProfileConfig: profile or sim
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


def _pcsc_card(reader: str, msisdn: str, where: str) -> Any:
    """The card in PC/SC reader ``reader``, connected now (a missing pcscd, reader or card is a
    one-line CardUnavailable at start-up). pyscard is imported only when a config names one."""
    try:
        from handset.pcsc_card import PcscCard
    except ImportError as exc:
        raise ConfigError(where, f"pcsc: needs pyscard (pip install pyscard): {exc}") from None
    card = PcscCard(reader, msisdn, where=where)
    card.open()
    return card


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
        self._frozen = False
        self._gc_threshold = gc.get_threshold()

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
        # The cards, phones and MEs built above live as long as the service: moved out of the
        # cyclic collector's generations (gc.freeze) until stop(), so that its full collections
        # stop walking them. At 10^4 cards those cost the network process seconds per run
        # (benchmarks.e2e), more than its SMSC and SMPP codec together. And a young collection
        # every YOUNG_GC_THRESHOLD net allocations rather than 700: what one message allocates
        # dies with it, so most young collections found little but cost up to a tenth of the
        # flow. stop() gives both back (gc.unfreeze, the threshold it found).
        if not self._frozen:
            gc.freeze()
            self._frozen = True
            self._gc_threshold = gc.get_threshold()
            if self._gc_threshold[0] < YOUNG_GC_THRESHOLD:
                gc.set_threshold(YOUNG_GC_THRESHOLD, *self._gc_threshold[1:])
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
        for card in self._cards or []:
            close = getattr(card, "close", None)  # a card in a PC/SC reader: release its handle
            if callable(close):
                close()
        if self.capture is not None:
            self.capture.close()
        if self._frozen:
            self._frozen = False
            gc.unfreeze()  # back to the oldest generation: collected as usual from here on
            if gc.get_threshold()[0] == YOUNG_GC_THRESHOLD:  # ours, not one set since
                gc.set_threshold(*self._gc_threshold)

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

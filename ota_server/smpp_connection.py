"""One TCP connection to the SMSC and its transceiver bind, over smpplib's public API.

Clauses: SMPP 3.4 §4.1.5 (bind_transceiver), §4.2 (unbind), §4.3 (generic_nack), §4.4
(submit_sm), §4.6 (deliver_sm), §4.11 (enquire_link), §5.3.2 (TLVs); smpp-and-peers.md §2, §3.

Used by the link thread of :mod:`ota_server.smpp_link` alone. smpplib builds, numbers and
parses the PDUs (``make_pdu``, ``send_pdu``, ``read_pdu``; the submit_sm, deliver_sm and
submit_sm_resp of the flow on PDU objects made once and refilled: :class:`SubmitPdus`,
:class:`ParsedPdus`) and keeps the bind state; the bytes go through an
:class:`~ota_server.smpp_stream.SmppStream`. :func:`open_connection`
connects and binds; a :class:`Connection` then writes submits and acknowledgements, reads
and dispatches what the SMSC sends, and keeps two timers: the oldest unanswered submit_sm
(``response_timeout_s``) and enquire_link after ``enquire_link_s`` of silence. What it learns
goes out through ``emit`` as link events; a lost link is a ``TransportError`` with the reason.

When smpplib cannot parse a PDU the SMSC may legitimately send (a TLV it does not place in
that command, gotcha 5 of smpp-and-peers.md §3), the shared codec of
:mod:`ota_protocols.smpp.pdu_codec` reads it instead.

Glossary: PDU protocol data unit; seq sequence_number; TLV optional parameter; UDH user data
header; resp response.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections import deque
from collections.abc import Callable

import smpplib.client
import smpplib.command
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

from ota_protocols.errors import ConnectionLost, PeerTimeout
from ota_protocols.smpp.command_status import RESPONSE_BIT, CommandStatus, command_name
from ota_protocols.smpp.pdu_codec import (
    BindResp,
    DeliverSm,
    GenericNack,
    MalformedPdu,
    SubmitSmResp,
    decode_pdu,
)
from ota_server.smpp_fields import deliver_received, deliver_received_from_codec, smpplib_text
from ota_server.smpp_link_events import (
    DeliverHandle,
    DeliverReceived,
    LinkEvent,
    LinkSettings,
    RoundTrips,
    SubmitAccepted,
    SubmitRejected,
    SubmitUnknown,
    status_text,
)
from ota_server.smpp_stream import SmppStream, SocketFactory, Waker

__all__ = ["Connection", "ParsedPdus", "SubmitPdus", "open_connection"]

log = logging.getLogger("ota_server.smpp_link")

# smpplib's Client logs every PDU in hex at DEBUG, the bind's password included, and warns about
# states it does not expect on disconnect; we log what matters ourselves, without the password.
_SMPPLIB_LOG = "ota_server.smpp_link.smpplib"
logging.getLogger(_SMPPLIB_LOG).addFilter(lambda record: record.levelno >= logging.ERROR)

SUBMITS_PER_TURN = 512  # then read and report before writing more

# What smpplib's parser raises on a body it cannot read (besides UnknownCommandError).
_PARSE_ERRORS: tuple[type[Exception], ...] = (
    KeyError,
    IndexError,
    ValueError,
    TypeError,
    UnicodeError,
    struct.error,
    smpplib.exceptions.PDUError,
)


def open_connection(
    settings: LinkSettings,
    number: int,
    deadline: float,
    *,
    waker: Waker,
    stopping: threading.Event,
    emit: Callable[[LinkEvent], None],
    logged: set[str],
    round_trips: RoundTrips | None = None,
    ack_times: RoundTrips | None = None,
) -> tuple[Connection, str]:
    """TCP connect, bind_transceiver and its answer, all before ``deadline`` (monotonic).

    Returns the bound connection and their system_id; raises ``ConnectionLost`` or
    ``PeerTimeout`` with a one-line reason (no host prefix).
    """
    s = settings
    now = time.monotonic()
    stream = SmppStream(
        s.host, s.port, waker=waker, stopping=stopping, connect_until=min(now + s.connect_timeout_s, deadline)
    )
    client = smpplib.client.Client(
        s.host,
        s.port,
        timeout=s.connect_timeout_s,
        sequence_generator=smpplib.client.SimpleSequenceGenerator(),
        ssl_context=SocketFactory(stream),
        allow_unknown_opt_params=True,
        logger_name=_SMPPLIB_LOG,
    )
    try:
        client.connect()
    except smpplib.exceptions.ConnectionError:
        client.disconnect()
        raise stream.failure or ConnectionLost("TCP connect failed") from None
    try:
        their = _bind(client, stream, settings, deadline, stopping)
    except (ConnectionLost, PeerTimeout):
        client.disconnect()
        raise
    connection = Connection(
        settings,
        number,
        client,
        stream,
        emit=emit,
        logged=logged,
        round_trips=round_trips,
        ack_times=ack_times,
    )
    return connection, their


def _bind(
    client: smpplib.client.Client,
    stream: SmppStream,
    settings: LinkSettings,
    deadline: float,
    stopping: threading.Event,
) -> str:
    """SMPP 3.4 §4.1.5: bind_transceiver, then its _resp (or generic_nack); their system_id."""
    started = time.monotonic()
    until = min(started + settings.bind_timeout_s, deadline)
    bind = smpplib.smpp.make_pdu(
        "bind_transceiver",
        client=client,
        system_id=settings.system_id,
        password=settings.password,
        system_type=settings.system_type,
    )
    client.send_pdu(bind)
    log.debug("-> bind_transceiver seq=%d system_id=%s", bind.sequence, settings.system_id)
    while True:
        try:
            raws = stream.exchange(until)
        except ConnectionLost:
            if stream.closed_by_peer:
                raise ConnectionLost("closed the connection before answering bind_transceiver") from None
            raise
        for i, raw in enumerate(raws):
            stream.stage(raw)
            try:
                pdu = client.read_pdu()  # a bind_transceiver_resp moves the client to BOUND_TRX
                command, seq, status = pdu.command, pdu.sequence, int(pdu.status)
                their = smpplib_text(getattr(pdu, "system_id", ""))
            except (smpplib.exceptions.UnknownCommandError, *_PARSE_ERRORS):
                command, seq, status, their = _bind_answer_by_codec(raw)
                if command == "bind_transceiver_resp" and not status:
                    client.state = smpplib.consts.SMPP_CLIENT_STATE_BOUND_TRX  # as read_pdu would
            if command in ("bind_transceiver_resp", "generic_nack") and seq == bind.sequence:
                if status:
                    how = "" if command == "bind_transceiver_resp" else " with generic_nack"
                    raise ConnectionLost(f"bind_transceiver refused{how}: {status_text(status)}")
                stream.push_back(raws[i + 1 :])  # what the SMSC sent right after: the bound link's
                return their
            log.debug("<- %s seq=%d before bind_transceiver_resp: ignored", command, seq)
        if stopping.is_set():
            raise ConnectionLost("closed while binding")
        if time.monotonic() >= until:
            waited = until - started  # bind_timeout_s, or less where the reconnect window ends first
            raise PeerTimeout(f"no bind_transceiver_resp within {waited:.3g} s: is it an SMPP SMSC?")


def _bind_answer_by_codec(raw: bytes) -> tuple[str, int, int, str]:
    """An answer smpplib cannot parse: (command, seq, status, system_id) if the shared codec reads
    a bind_transceiver_resp or generic_nack in it; anything else means the peer is not SMPP."""
    try:
        pdu = decode_pdu(raw)
    except MalformedPdu:
        pdu = None
    if not isinstance(pdu, BindResp | GenericNack):
        raise ConnectionLost(f"not SMPP: answered bind_transceiver with {raw[:32]!r}")
    their = pdu.system_id if isinstance(pdu, BindResp) else ""
    return command_name(pdu.command_id), pdu.sequence_number, pdu.command_status, their


class SubmitPdus:
    """smpplib submit_sm PDUs for one client, built by ``make_pdu`` once per set of field names and
    then refilled: every field of the set is assigned again and the PDU numbered afresh with the
    client's ``next_sequence()``, as ``make_pdu`` would do. ``generate()`` then gives the bytes a new
    ``make_pdu`` would (tests/ota_server/test_smpp_link.py checks it) for a third of the cost:
    constructing smpplib's PDU object is what the link thread spent most on per submit. Its
    ``params_order`` (public, the order ``generate()`` writes in) is kept to the mandatory
    parameters and the TLVs of the set: 28 -> 16 us per build and generate.

    The PDU returned is valid until the next call (one link thread writes it at once)."""

    __slots__ = ("_names", "_pdu")

    def __init__(self) -> None:
        self._names: frozenset[str] = frozenset()
        self._pdu: smpplib.command.SubmitSM | None = None

    def build(self, client: smpplib.client.Client, fields: dict[str, object]) -> smpplib.command.SubmitSM:
        pdu = self._pdu
        if pdu is None or self._names != fields.keys():
            pdu = smpplib.smpp.make_pdu("submit_sm", client=client, **fields)
            # generate() writes the parameters of params_order in turn, and an optional one that
            # is None writes nothing: the order kept to the mandatory parameters and the TLVs of
            # this set gives the same bytes without visiting the ~28 TLVs never set here.
            pdu.params_order = tuple(
                name for name in pdu.params_order if name in fields or not pdu.field_is_optional(name)
            )
            self._pdu, self._names = pdu, frozenset(fields)
            return pdu
        for name, value in fields.items():
            setattr(pdu, name, value)
        pdu.sequence = client.next_sequence()
        return pdu


# command_id -> smpplib command name of what the SMSC sends all the time (SMPP 3.4 §5.1.2).
_POOLED_READS = {0x00000005: "deliver_sm", 0x80000004: "submit_sm_resp"}


class ParsedPdus:
    """smpplib PDUs for what the SMSC sends all the time (deliver_sm, submit_sm_resp), each made by
    ``make_pdu`` once and then refilled by its public ``parse``: every parameter of the command is
    set back to None (what a new one holds) first, so nothing of the last PDU is left, and for a
    deliver_sm the client's ``next_sequence()`` is taken as constructing one takes it, so our
    submit_sm keep the sequence numbers ``read_pdu`` would leave them. The attributes are those
    ``read_pdu`` would give (tests/ota_server/test_smpp_link.py checks it) for half the cost:
    constructing smpplib's PDU object (three passes of ``hasattr`` over its 40 parameters) was
    what the link thread spent most on per deliver_sm. Any other command: None (``read_pdu``).

    The PDU returned is valid until the next call with the same command (one link thread reads
    and dispatches it at once)."""

    __slots__ = ("_client", "_pdus")

    def __init__(self, client: smpplib.client.Client) -> None:
        self._client = client
        self._pdus: dict[int, tuple[smpplib.command.Command, tuple[str, ...], bool]] = {}

    def parse(self, raw: bytes) -> smpplib.command.Command | None:
        """``raw`` (one whole PDU) parsed as ``read_pdu`` would; None when it is not pooled."""
        command_id = int.from_bytes(raw[4:8], "big")
        entry = self._pdus.get(command_id)
        if entry is None:
            name = _POOLED_READS.get(command_id)
            if name is None:
                return None
            client = self._client
            pdu = smpplib.smpp.make_pdu(
                name, client=client, allow_unknown_opt_params=client.allow_unknown_opt_params
            )
            numbered = command_id == 0x00000005  # deliver_sm takes a number when made (§4.6)
            entry = self._pdus[command_id] = (pdu, tuple(pdu.params), numbered)
        else:
            pdu, names, numbered = entry
            for name in names:
                setattr(pdu, name, None)
            if numbered:
                self._client.next_sequence()
        pdu.parse(raw)
        return pdu


class Connection:
    """A bound transceiver connection; see the module docstring. Owned by the link thread."""

    def __init__(
        self,
        settings: LinkSettings,
        number: int,
        client: smpplib.client.Client,
        stream: SmppStream,
        *,
        emit: Callable[[LinkEvent], None],
        logged: set[str],
        round_trips: RoundTrips | None = None,
        ack_times: RoundTrips | None = None,
    ) -> None:
        self.settings = settings
        self.number = number  # 1, 2, ... per link: DeliverHandle.connection
        self.where = f"SMSC {settings.host}:{settings.port}"
        self.client = client
        self.stream = stream
        self.inflight: dict[int, tuple[object, float]] = {}  # seq -> (token, deadline), in send order
        self.unacked: dict[int, float] = {}  # deliver_sm seq handed out, not yet acknowledged -> read at
        self.last_rx = time.monotonic()
        self.enquire_seq: int | None = None
        self.enquire_deadline = 0.0
        self.unbound = False  # unbind_resp received (our close)
        self._emit = emit
        self._logged = logged
        self._round_trips = round_trips
        self._ack_times = ack_times
        self._submits = SubmitPdus()
        self._reads = ParsedPdus(client)
        self._ack: smpplib.command.DeliverSMResp | None = None  # deliver_sm_resp ESME_ROK, renumbered
        self._rx_at = self.last_rx  # when the PDUs being dispatched were read

    def _log_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning(message, *args)

    # ---------------------------------------------------------------- writing

    def write_submits(self, queue: deque[tuple[object, dict[str, object]]], now: float) -> None:
        """Up to SUBMITS_PER_TURN queued submit_sm, in order; each gets its response deadline."""
        client = self.client
        deadline = now + self.settings.response_timeout_s
        debug = log.isEnabledFor(logging.DEBUG)
        for _ in range(min(len(queue), SUBMITS_PER_TURN)):
            token, fields = queue.popleft()
            pdu = self._submits.build(client, fields)
            client.send_pdu(pdu)
            self.inflight[pdu.sequence] = (token, deadline)
            if debug:
                log.debug(
                    "-> submit_sm seq=%d dst=%s esm_class=%#04x pid=%#04x dcs=%#04x ud=%s",
                    pdu.sequence,
                    fields["destination_addr"],
                    fields["esm_class"],
                    fields["protocol_id"],
                    fields["data_coding"],
                    bytes(fields["short_message"]).hex(),  # type: ignore[call-overload]
                )

    def write_acks(self, handles: list[object]) -> None:
        """deliver_sm_resp ESME_ROK (§4.6.2) for handles of this connection not yet answered."""
        for handle in handles:
            if not isinstance(handle, DeliverHandle):
                self._log_once("bad-handle", "acknowledge(): %r is not a DeliverHandle: ignored", handle)
                continue
            seq = handle.sequence_number
            read_at = self.unacked.pop(seq, None) if handle.connection == self.number else None
            if read_at is None:
                log.debug("ack of deliver_sm seq=%d (connection %d) dropped", seq, handle.connection)
                continue
            if self._ack_times is not None:
                self._ack_times.add(time.monotonic() - read_at)
            ack = self._ack
            if ack is None:
                ack = self._ack = smpplib.smpp.make_pdu("deliver_sm_resp", client=self.client, status=0)
            ack.sequence = seq  # the same bytes as a new one: only the sequence differs (§4.6.2)
            self.client.send_pdu(ack)
            log.debug("-> deliver_sm_resp seq=%d status=0x0", seq)

    def _respond(self, command: str, seq: int, status: int = 0) -> None:
        resp = smpplib.smpp.make_pdu(command, client=self.client, status=status)
        resp.sequence = seq  # the sequence= keyword is ignored (smpp-and-peers.md §3, gotcha 2)
        self.client.send_pdu(resp)
        log.debug("-> %s seq=%d status=%#x", command, seq, status)

    # ---------------------------------------------------------------- waiting and timers

    def next_deadline(self) -> float:
        """The enquire_link timer (§4.11), or the oldest unanswered submit_sm's if earlier."""
        if self.enquire_seq is None:
            until = self.last_rx + self.settings.enquire_link_s
        else:
            until = self.enquire_deadline
        if self.inflight:
            until = min(until, next(iter(self.inflight.values()))[1])
        return until

    def exchange(self, until: float) -> None:
        """Write, wait until readable, woken or ``until``; dispatch what arrived; run the timers."""
        raws = self.stream.exchange(until)
        now = time.monotonic()
        if raws:
            self.last_rx = self._rx_at = now
            for raw in raws:
                self._dispatch(raw)
        self._expire(now)
        self._keep_alive(now)

    def _expire(self, now: float) -> None:
        inflight = self.inflight
        while inflight:
            seq = next(iter(inflight))
            token, deadline = inflight[seq]
            if deadline > now:
                return
            del inflight[seq]
            timeout = self.settings.response_timeout_s
            log.warning("%s: submit_sm seq=%d unanswered after %g s", self.where, seq, timeout)
            self._emit(SubmitUnknown(token, f"no submit_sm_resp within {timeout:g} s (seq={seq})"))

    def _keep_alive(self, now: float) -> None:
        """SMPP 3.4 §4.11: enquire_link after enquire_link_s without a PDU from the SMSC."""
        s = self.settings
        if self.enquire_seq is not None:
            if now >= self.enquire_deadline:
                raise PeerTimeout(f"no enquire_link_resp within {s.response_timeout_s:g} s: link dead")
        elif now - self.last_rx >= s.enquire_link_s:
            pdu = smpplib.smpp.make_pdu("enquire_link", client=self.client)
            self.client.send_pdu(pdu)
            self.enquire_seq, self.enquire_deadline = pdu.sequence, now + s.response_timeout_s
            log.debug("-> enquire_link seq=%d", pdu.sequence)

    # ---------------------------------------------------------------- ending

    def unbind(self, budget_s: float) -> None:
        """SMPP 3.4 §4.2: unbind and wait (bounded) for unbind_resp; submit_sm_resp still count."""
        self.client.send_pdu(smpplib.smpp.make_pdu("unbind", client=self.client))
        until = time.monotonic() + min(self.settings.response_timeout_s, budget_s)
        while not self.unbound and time.monotonic() < until:
            for raw in self.stream.exchange(until):
                self._dispatch(raw, closing=True)
        if not self.unbound:
            log.info("%s: no unbind_resp; disconnecting anyway", self.where)

    def abandon(self, reason: str) -> None:
        """The link is gone: every written, unanswered submit_sm has an unknown outcome."""
        for seq, (token, _) in self.inflight.items():
            self._emit(SubmitUnknown(token, f"link lost after submit_sm seq={seq}: {reason}"))
        self.inflight.clear()
        self.unacked.clear()

    def disconnect(self) -> None:
        self.client.disconnect()

    # ---------------------------------------------------------------- PDUs from the SMSC

    def _dispatch(self, raw: bytes, *, closing: bool = False) -> None:
        try:
            pdu = self._reads.parse(raw)
            if pdu is None:
                self.stream.stage(raw)
                pdu = self.client.read_pdu()
        except smpplib.exceptions.UnknownCommandError:
            self._unsupported(raw)
            return
        except _PARSE_ERRORS as exc:
            self._parse_with_our_codec(raw, exc, closing)
            return
        command, seq = pdu.command, pdu.sequence
        if command == "submit_sm_resp":
            self._on_submit_resp(seq, int(pdu.status), smpplib_text(pdu.message_id))
        elif command == "deliver_sm":
            if closing:
                return  # not acknowledged: the SMSC delivers it again on a later bind
            self._on_deliver(deliver_received(pdu, DeliverHandle(self.number, seq)))
        elif command == "enquire_link":
            self._respond("enquire_link_resp", seq)  # §4.11.2
        elif command == "enquire_link_resp":
            if seq == self.enquire_seq:
                self.enquire_seq = None
        elif command == "generic_nack":
            self._on_generic_nack(seq, int(pdu.status))
        elif command == "unbind":
            # §4.2.2: answer it; the bind is over (an SMSC going down): the link reconnects.
            self._respond("unbind_resp", seq)
            self.stream.flush(time.monotonic() + 1.0)
            raise ConnectionLost("the SMSC unbound (SMPP 3.4 §4.2)")
        elif command == "unbind_resp":
            self.unbound = True
        elif pdu.is_request() and command != "alert_notification":  # §4.12: no response
            self._unsupported(raw)
        else:
            self._log_once(command, "%s: unexpected %s seq=%d ignored", self.where, command, seq)

    def _parse_with_our_codec(self, raw: bytes, exc: Exception, closing: bool) -> None:
        """smpplib could not read it (e.g. a TLV it does not place there): the shared codec can."""
        command_id = int.from_bytes(raw[4:8], "big")
        seq = int.from_bytes(raw[12:16], "big")
        name = command_name(command_id)
        self._log_once(
            f"parse:{name}", "%s: smpplib cannot parse %s (%r): our codec reads it", self.where, name, exc
        )
        try:
            pdu = decode_pdu(raw)
        except MalformedPdu as bad:
            self._log_once(f"bad:{name}", "%s: malformed %s seq=%d refused: %s", self.where, name, seq, bad)
            if name == "deliver_sm":
                self._respond("deliver_sm_resp", seq, bad.command_status)
            elif not command_id & RESPONSE_BIT:
                self._respond("generic_nack", seq, bad.command_status)
            return
        if isinstance(pdu, SubmitSmResp):
            self._on_submit_resp(seq, pdu.command_status, pdu.message_id)
        elif isinstance(pdu, DeliverSm) and not closing:
            self._on_deliver(deliver_received_from_codec(pdu, DeliverHandle(self.number, seq)))

    def _unsupported(self, raw: bytes) -> None:
        """A command smpplib does not know, or we do not take: generic_nack a request (§3.3, §4.3)."""
        command_id = int.from_bytes(raw[4:8], "big")
        seq = int.from_bytes(raw[12:16], "big")
        name = command_name(command_id)
        if command_id & RESPONSE_BIT:
            self._log_once(name, "%s: unexpected %s seq=%d ignored", self.where, name, seq)
            return
        self._log_once(name, "%s: %s not supported: answered generic_nack ESME_RINVCMDID", self.where, name)
        self._respond("generic_nack", seq, CommandStatus.ESME_RINVCMDID)

    def _on_submit_resp(self, seq: int, status: int, message_id: str) -> None:
        entry = self.inflight.pop(seq, None)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("<- submit_sm_resp seq=%d status=%#x message_id=%s", seq, status, message_id)
        if entry is None:
            return  # answered after it was reported unknown
        if self._round_trips is not None:  # written at deadline - response_timeout_s
            self._round_trips.add(self._rx_at - entry[1] + self.settings.response_timeout_s)
        if status == CommandStatus.ESME_ROK:
            self._emit(SubmitAccepted(entry[0], message_id))
        else:
            self._emit(SubmitRejected(entry[0], status))

    def _on_generic_nack(self, seq: int, status: int) -> None:
        """§4.3: the SMSC could not take one of our PDUs; its seq says which."""
        self._log_once("generic_nack", "%s: generic_nack seq=%d %s", self.where, seq, status_text(status))
        entry = self.inflight.pop(seq, None)
        if entry is not None:
            if status:
                self._emit(SubmitRejected(entry[0], status))
            else:
                self._emit(SubmitUnknown(entry[0], f"generic_nack with status 0 for seq={seq}"))
        elif seq == self.enquire_seq:
            self.enquire_seq = None  # an answer all the same: the link is alive

    def _on_deliver(self, event: DeliverReceived) -> None:
        assert isinstance(event.handle, DeliverHandle)
        self.unacked[event.handle.sequence_number] = self._rx_at
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "<- deliver_sm seq=%d src=%s esm_class=%#04x pid=%#04x dcs=%#04x ud=%s",
                event.handle.sequence_number,
                event.source_addr,
                event.esm_class,
                event.protocol_id,
                event.data_coding,
                event.user_data.hex(),
            )
        self._emit(event)

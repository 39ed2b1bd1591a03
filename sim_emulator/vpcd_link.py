"""The card side of a vsmartcard vpcd link: bytes in, events out (PURE).

vpcd is the PC/SC reader driver of vsmartcard (Debian ``vsmartcard-vpcd``). pcscd loads it, and it
waits on a TCP port (35963 for its first reader, 35964 for its second, ...) for a virtual card to
connect. On that connection both directions use one framing (vpcd protocol, ``vpcd.c``
``sendToVICC`` / ``recvFromVICC``): a 2-octet big-endian length, then that many octets.

From the reader, a 1-octet message is a control and a longer one a C-APDU (ISO/IEC 7816-4 §5.1)::

    00  power off   (IFD_POWER_DOWN)  no answer
    01  power on    (IFD_POWER_UP)    no answer; vpcd asks for the ATR next
    02  reset       (IFD_RESET)       no answer; vpcd asks for the ATR next
    04  ATR request                   answer: the ATR (also pcscd's presence poll, every few
                                      hundred ms: it must never reset the card)
    C-APDU (>= 2 octets)              answer: the R-APDU (data + SW1 SW2)

vpcd sends one message and waits for its answer before the next (one lock per reader), so the
answers go out in the order of the requests that want one.

Theory of operation. :meth:`VpcdLink.receive_data` takes any chunking of the stream; :meth:`events`
returns what arrived: :class:`PowerOff`, :class:`PowerOn`, :class:`Reset`, :class:`AtrRequested`,
:class:`ApduReceived`, :class:`FrameIgnored`. The caller answers :class:`AtrRequested` and
:class:`ApduReceived` with :meth:`answer` and sends :meth:`data_to_send`. The link tracks power:
an APDU to a card that is off is preceded by a :class:`Reset` event (ISO/IEC 7816-3 §6.2: a card
answers only after activation, so the APDU meets a freshly reset card rather than stale volatile
state); vpcd itself never does this (pcscd powers the card up on SCardConnect).

Frames vpcd never sends (length 0, an unknown control octet) become :class:`FrameIgnored`: the
caller logs it and sends nothing, since nothing says an answer is awaited.

Glossary: ATR answer to reset; C-APDU / R-APDU command / response APDU; SW status word; IFD
interface device (the reader).
"""

from __future__ import annotations

from dataclasses import dataclass

from ota_protocols.errors import LocalProtocolViolation

__all__ = [
    "CTRL_ATR",
    "CTRL_OFF",
    "CTRL_ON",
    "CTRL_RESET",
    "MAX_FRAME",
    "ApduReceived",
    "AtrRequested",
    "FrameIgnored",
    "PowerOff",
    "PowerOn",
    "Reset",
    "VpcdEvent",
    "VpcdLink",
    "frame",
]

# vpcd.h / vpcd.c: VPCD_CTRL_OFF, _ON, _RESET, _ATR; the control message is one octet (VPCD_CTRL_LEN).
CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0x00, 0x01, 0x02, 0x04
MAX_FRAME = 0xFFFF  # the length field is a uint16 (vpcd.c sendToVICC: length > 0xFFFF is EINVAL)
_LENGTH = 2


@dataclass(frozen=True, slots=True)
class PowerOff:
    """Deactivation (ISO/IEC 7816-3 §6.4): volatile state is gone by the next activation."""


@dataclass(frozen=True, slots=True)
class PowerOn:
    """Cold reset (ISO/IEC 7816-3 §6.2.2); the ATR request follows."""


@dataclass(frozen=True, slots=True)
class Reset:
    """Warm reset (ISO/IEC 7816-3 §6.2.3), or the activation before an APDU to a card that was off."""


@dataclass(frozen=True, slots=True)
class AtrRequested:
    """Answer with the ATR (:meth:`VpcdLink.answer`); do not reset."""


@dataclass(frozen=True, slots=True)
class ApduReceived:
    """Answer with the R-APDU (:meth:`VpcdLink.answer`)."""

    apdu: bytes


@dataclass(frozen=True, slots=True)
class FrameIgnored:
    """A frame vpcd never sends; ``offset`` is where its length field starts in the stream."""

    offset: int
    reason: str


VpcdEvent = PowerOff | PowerOn | Reset | AtrRequested | ApduReceived | FrameIgnored


def frame(payload: bytes) -> bytes:
    """One message on the link: 2-octet big-endian length, then ``payload``."""
    if len(payload) > MAX_FRAME:
        raise LocalProtocolViolation(f"vpcd frame of {len(payload)} octets exceeds the 16-bit length field")
    return len(payload).to_bytes(_LENGTH, "big") + payload


class VpcdLink:
    """One card's end of one vpcd connection. See the module docstring."""

    __slots__ = ("_buffer", "_consumed", "_events", "_out", "_unanswered", "powered")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._consumed = 0  # stream offset of _buffer[0]
        self._events: list[VpcdEvent] = []
        self._out = bytearray()
        self._unanswered = 0  # ATR requests and APDUs received and not yet answered
        # vpcd powers the card up (01) on SCardConnect; until then the card is off.
        self.powered = False

    @property
    def buffered(self) -> int:
        """Octets of an incomplete frame held back."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        start = 0
        while len(buf) - start >= _LENGTH:
            length = int.from_bytes(buf[start : start + _LENGTH], "big")
            end = start + _LENGTH + length
            if len(buf) < end:
                break
            self._message(bytes(buf[start + _LENGTH : end]), self._consumed + start)
            start = end
        del buf[:start]
        self._consumed += start

    def _message(self, payload: bytes, offset: int) -> None:
        events = self._events
        if not payload:
            events.append(FrameIgnored(offset, "empty frame (vpcd sends none)"))
            return
        if len(payload) == 1:
            control = payload[0]
            if control == CTRL_OFF:
                self.powered = False
                events.append(PowerOff())
            elif control == CTRL_ON:
                self.powered = True
                events.append(PowerOn())
            elif control == CTRL_RESET:
                self.powered = True
                events.append(Reset())
            elif control == CTRL_ATR:
                self._unanswered += 1
                events.append(AtrRequested())
            else:
                events.append(FrameIgnored(offset, f"unknown control octet {control:#04x}"))
            return
        # Two octets or more: a C-APDU. A short one (< CLA INS P1 P2) still goes to the card,
        # which answers it 67 00 (ISO/IEC 7816-4 §5.6: wrong length), as a real card would.
        if not self.powered:
            self.powered = True
            events.append(Reset())
        self._unanswered += 1
        events.append(ApduReceived(payload))

    def events(self) -> list[VpcdEvent]:
        """The events since the last call, in stream order."""
        events, self._events = self._events, []
        return events

    def answer(self, payload: bytes) -> None:
        """The answer to the oldest unanswered :class:`AtrRequested` or :class:`ApduReceived`."""
        if self._unanswered == 0:
            raise LocalProtocolViolation("vpcd answer with no ATR request or APDU awaiting one")
        self._out += frame(payload)
        self._unanswered -= 1

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

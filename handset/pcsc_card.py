"""A phone's SIM that is a card in a PC/SC reader (I/O shell; the one module that imports pyscard).

``[[cards]] sim = "pcsc:READER NAME"`` in the handset config puts such a card in a phone: the ME
(:mod:`handset.mobile_equipment`) talks to it exactly as to an emulated card, through
:meth:`PcscCard.exchange` (C-APDU bytes in T=0 form, R-APDU bytes out). The card may be a real
(U)SIM in a USB reader or ``sim-emulator pcsc`` in a vsmartcard vpcd reader.

PC/SC (pcsc-lite's winscard API through ``smartcard.scard``): the card is connected EXCLUSIVE with
protocol T=0 only, so no other application's APDU can fall between an ENVELOPE and its GET
RESPONSE, and the APDUs go out as the ME builds them. TS 102 221 §7.2: T=0 is mandatory for a
UICC; the ME's APDUs carry P3 and follow ``61 XX`` / ``6C XX`` itself (ISO/IEC 7816-3 §10.3.3-4),
so no T=1 rewriting is wanted. ``reset()`` is SCardReconnect with SCARD_RESET_CARD (a warm reset,
ISO/IEC 7816-3 §6.2.3), or a new SCardConnect when the old handle died with the card.

Errors: every PC/SC failure is :class:`~ota_protocols.errors.CardUnavailable` with one line naming
the card's config key, the reader and pcsc-lite's own message: no pcscd (SCARD_E_NO_SERVICE),
no such reader, no card, card in use, card removed mid-APDU (SCARD_W_REMOVED_CARD,
SCARD_E_NOT_TRANSACTED, ...). After a failure the handle is dropped; the ME answers the SMS with
RP-ERROR and resets the card (which reconnects) before it next needs it.

The calls block: pcsc-lite has no asynchronous transmit. A card answers in milliseconds, but a
hung card stalls the handset's event loop (the same holds for an in-process emulated card).

Glossary: ME mobile equipment; ATR answer to reset; PC/SC personal computer / smart card (the
winscard API); T=0 the character protocol of ISO/IEC 7816-3.
"""

from __future__ import annotations

import logging
from typing import Any

from smartcard import scard

from ota_protocols.errors import CardUnavailable

__all__ = ["PCSC_SCHEME", "PcscCard", "reader_of"]

log = logging.getLogger(__name__)
PCSC_SCHEME = "pcsc:"
_SHARE = scard.SCARD_SHARE_EXCLUSIVE
_PROTOCOL = scard.SCARD_PROTOCOL_T0
# EF.ICCID (TS 102 221 §13.2), read once at connection for the report: SELECT MF, SELECT 2FE2,
# READ BINARY 10 octets, GET RESPONSE after a SELECT answered 61 XX (ISO/IEC 7816-3 §10.3.3).
_SELECT_MF = bytes.fromhex("00a40004023f00")
_SELECT_ICCID = bytes.fromhex("00a40004022fe2")
_READ_ICCID = bytes.fromhex("00b000000a")


def reader_of(sim: str) -> str | None:
    """The reader name of a ``pcsc:READER NAME`` SIM, None when ``sim`` is not of that scheme."""
    if not sim.startswith(PCSC_SCHEME):
        return None
    return sim[len(PCSC_SCHEME) :].strip()


def _message(code: int) -> str:
    return f"{scard.SCardGetErrorMessage(code).rstrip('.')} ({code & 0xFFFFFFFF:#010x})"


def _iccid_digits(ef: bytes) -> str:
    """EF.ICCID's swapped BCD (TS 102 221 §13.2) -> digits, F filler dropped."""
    digits = "".join(f"{b & 0x0F:x}{b >> 4:x}" for b in ef)
    return digits.rstrip("f")


class PcscCard:
    """One card in one PC/SC reader, as a phone's SIM. ``where`` names it in errors (config key)."""

    def __init__(self, reader: str, msisdn: str, *, where: str = "pcsc") -> None:
        self.reader = reader
        self.msisdn = msisdn
        self.where = where
        self.iccid: str | None = None
        self.atr = b""
        self.apdus = 0
        self.failures = 0
        self._context: Any = None
        self._handle: Any = None

    def __repr__(self) -> str:
        return f"PcscCard(reader={self.reader!r}, msisdn={self.msisdn})"

    def _fail(self, what: str, code: int | None = None, detail: str = "") -> CardUnavailable:
        why = detail or (_message(code) if code is not None else "")
        return CardUnavailable(f"{self.where}: reader {self.reader!r}: {what}: {why}")

    # ------------------------------------------------------------------ connection

    def open(self) -> None:
        """Establish the PC/SC context, find the reader, connect to its card, read EF.ICCID."""
        if self._context is None:
            rv, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if rv != scard.SCARD_S_SUCCESS:
                hint = " (is pcscd running?)" if rv == scard.SCARD_E_NO_SERVICE else ""
                raise self._fail("no PC/SC service", rv, _message(rv) + hint)
            self._context = context
        rv, readers = scard.SCardListReaders(self._context, [])
        if rv == scard.SCARD_E_NO_READERS_AVAILABLE:
            readers = []
        elif rv != scard.SCARD_S_SUCCESS:
            raise self._fail("cannot list readers", rv)
        if self.reader not in readers:
            known = ", ".join(repr(r) for r in readers) or "none"
            raise self._fail("no such reader", detail=f"readers: {known}")
        self._connect()
        self.iccid = self._read_iccid()
        log.info("%s: card %s in reader %r, ATR %s", self.where, self.iccid, self.reader, self.atr.hex())

    def _connect(self) -> None:
        rv, handle, _protocol = scard.SCardConnect(self._context, self.reader, _SHARE, _PROTOCOL)
        if rv != scard.SCARD_S_SUCCESS:
            what = {
                scard.SCARD_E_NO_SMARTCARD: "no card",
                scard.SCARD_W_REMOVED_CARD: "no card",
                scard.SCARD_E_SHARING_VIOLATION: "card in use by another application",
                scard.SCARD_E_NO_SERVICE: "no PC/SC service",
            }.get(rv, "cannot connect")
            raise self._fail(what, rv)
        self._handle = handle
        self.atr = self._status_atr()

    def _status_atr(self) -> bytes:
        rv, _name, _state, _protocol, atr = scard.SCardStatus(self._handle)
        return bytes(atr) if rv == scard.SCARD_S_SUCCESS else b""

    def _read_iccid(self) -> str | None:
        for apdu in (_SELECT_MF, _SELECT_ICCID):
            r = self.exchange(apdu)
            if len(r) >= 2 and r[-2] == 0x61:
                self.exchange(bytes((0x00, 0xC0, 0x00, 0x00, r[-1])))
        r = self.exchange(_READ_ICCID)
        if r[-2:] != b"\x90\x00" or len(r) != 12:
            log.warning("%s: EF.ICCID unreadable (%s); the report has no ICCID", self.where, r[-2:].hex())
            return None
        return _iccid_digits(r[:-2])

    def _drop(self) -> None:
        if self._handle is not None:
            scard.SCardDisconnect(self._handle, scard.SCARD_LEAVE_CARD)
            self._handle = None

    def close(self) -> None:
        """Disconnect (leaving the card powered) and release the context."""
        self._drop()
        if self._context is not None:
            scard.SCardReleaseContext(self._context)
            self._context = None

    # ------------------------------------------------------------------ the ME's card interface

    def reset(self) -> bytes:
        """Warm reset (SCardReconnect, SCARD_RESET_CARD); reconnects when the card had gone.
        Returns the ATR; raises CardUnavailable when there is still no card."""
        if self._context is None:
            self.open()
            return self.atr
        if self._handle is not None:
            rv, _protocol = scard.SCardReconnect(self._handle, _SHARE, _PROTOCOL, scard.SCARD_RESET_CARD)
            if rv == scard.SCARD_S_SUCCESS:
                self.atr = self._status_atr()
                return self.atr
            log.info("%s: reconnect failed (%s); connecting again", self.where, _message(rv))
            self._drop()
        self._connect()
        return self.atr

    def exchange(self, c_apdu: bytes) -> bytes:
        """One APDU through SCardTransmit (T=0). Raises CardUnavailable when the card, the reader
        or pcscd is gone; the handle is then dropped until :meth:`reset`."""
        if self._handle is None:
            raise self._fail("no card connected", detail="removed earlier; the ME resets it first")
        rv, response = scard.SCardTransmit(self._handle, scard.SCARD_PCI_T0, list(c_apdu))
        if rv != scard.SCARD_S_SUCCESS:
            self.failures += 1
            self._drop()
            raise self._fail(f"card lost on APDU {bytes(c_apdu[:5]).hex()}", rv)
        if len(response) < 2:
            # ISO/IEC 7816-4 §5.1: every response ends with SW1 SW2. vpcd 3.3 reports success with
            # no data when its card's connection closed mid-APDU: no card answered.
            self.failures += 1
            self._drop()
            raise self._fail(
                f"card lost on APDU {bytes(c_apdu[:5]).hex()}",
                detail=f"{len(response)}-octet answer without a status word (the card left mid-APDU)",
            )
        self.apdus += 1
        return bytes(response)

    def report(self) -> dict[str, Any]:
        """What the handset's report says of this card: no journal (that lives inside the card)."""
        return {
            "iccid": self.iccid,
            "msisdn": self.msisdn,
            "reader": self.reader,
            "atr": self.atr.hex(),
            "apdus": self.apdus,
            "pcsc_failures": self.failures,
        }

"""The project's exception tree.

Every error the simulator raises on purpose descends from :class:`OtaSimError`.
An error that answers a peer carries the wire code of that answer, so the one
place that catches it (the SIM's security layer, an SMPP driver, the UICC
dispatcher) turns it into bytes without guessing::

    OtaSimError
    +-- ConfigError(key_path)                  CLI exit code 2
    +-- CodecError(field, offset)
    |   +-- DecodeError -- TruncatedData(needed)
    |   +-- EncodeError                        value does not fit its field
    +-- LocalProtocolViolation                 we broke the rules: a bug, let it surface
    +-- RemoteProtocolViolation                the peer broke them; we know the answer
    |   +-- SmppViolation(command_status)      -> *_resp or generic_nack status
    |   +-- SecurityRejection(response_status) -> PoR status byte
    |   |   +-- IntegrityCheckFailed           RC_CC_DS_FAILED
    |   |   +-- CounterRejected                CNTR_LOW | CNTR_HIGH | CNTR_BLOCKED
    |   |   +-- CipheringFailed                CIPHERING_ERROR
    |   |   +-- UnknownTar                     TAR_UNKNOWN
    |   |   +-- InsufficientSecurity           INSUFFICIENT_SECURITY_LEVEL
    |   |   +-- UnidentifiedSecurityError      UNIDENTIFIED_SECURITY_ERROR
    |   +-- ApduRejected(status_word)          -> SW1 SW2 of the response APDU
    +-- TransportError: ConnectionLost, PeerTimeout   raised by shells only
    |   +-- CardUnavailable                    a card in a reader cannot be reached (PC/SC)
    +-- StoreError

A codec error carries no wire code: the caller knows which answer fits and
re-raises with ``raise SmppViolation(...) from exc``.
"""

from __future__ import annotations


class OtaSimError(Exception):
    """Root of every error the project raises on purpose."""


class ConfigError(OtaSimError):
    """A configuration file, CLI argument or JSON input is wrong.

    ``key_path`` names the place (``keysets[0].kic_key``); ``source`` the file.
    """

    def __init__(self, key_path: str, message: str, *, source: str | None = None) -> None:
        self.key_path = key_path
        self.source = source
        self.detail = message
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key_path}: {message}" if key_path else f"{where}{message}")


class CodecError(OtaSimError):
    """Bytes that do not fit a format, with the field and offset where it broke."""

    def __init__(self, field: str, offset: int, message: str) -> None:
        self.field = field
        self.offset = offset
        self.detail = message
        super().__init__(f"{field} at offset {offset}: {message}")


class DecodeError(CodecError):
    """Received bytes cannot be decoded."""


class TruncatedData(DecodeError):
    """The input ended before a field was complete."""

    def __init__(self, field: str, offset: int, needed: int, available: int) -> None:
        self.needed = needed
        self.available = available
        super().__init__(field, offset, f"needs {needed} octet(s), only {available} left")


class EncodeError(CodecError):
    """A value does not fit its field."""


class LocalProtocolViolation(OtaSimError):
    """We were asked to do something the protocol forbids: a bug on our side."""


class RemoteProtocolViolation(OtaSimError):
    """The peer broke the protocol; subclasses carry the code to answer with."""


class SmppViolation(RemoteProtocolViolation):
    """An SMPP peer sent something we must refuse with ``command_status``."""

    def __init__(self, command_status: int, message: str) -> None:
        self.command_status = int(command_status)
        super().__init__(message)


class SecurityRejection(RemoteProtocolViolation):
    """A secured packet refused by the OTA security layer with a PoR status."""

    def __init__(self, response_status: int, message: str) -> None:
        self.response_status = int(response_status)
        super().__init__(message)


class IntegrityCheckFailed(SecurityRejection):
    pass


class CounterRejected(SecurityRejection):
    pass


class CipheringFailed(SecurityRejection):
    pass


class UnknownTar(SecurityRejection):
    pass


class InsufficientSecurity(SecurityRejection):
    pass


class UnidentifiedSecurityError(SecurityRejection):
    pass


class ApduRejected(RemoteProtocolViolation):
    """A command APDU refused with an ISO 7816-4 status word."""

    def __init__(self, status_word: int, message: str) -> None:
        self.status_word = int(status_word)
        super().__init__(f"SW {self.status_word:04X}: {message}")


class TransportError(OtaSimError):
    """Raised by I/O shells only."""


class ConnectionLost(TransportError):
    pass


class PeerTimeout(TransportError):
    pass


class CardUnavailable(TransportError):
    """A card behind a reader cannot be reached: no PC/SC service, no such reader, no card, or the
    card left mid-APDU. Unlike :class:`ConnectionLost` from an emulated card's tearing hook (the
    phone lost power with its card: no answer at all), the phone is alive and answers RP-ERROR."""


class StoreError(OtaSimError):
    """Persistent state could not be read or written."""

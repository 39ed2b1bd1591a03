"""SMPP 3.4 framing: a TCP byte stream -> whole PDUs (§3.2).

Each PDU opens with its own 4-octet command_length, which counts the whole
PDU, header included, so it is never below 16.  A length below 16 or above
the configured maximum means the stream can no longer be trusted: the framer
raises ``SmppViolation(ESME_RINVCMDLEN)`` and stays failed; the caller sends
generic_nack and closes the connection (§3.3: generic_nack for an invalid
command_length).

Glossary: PDU protocol data unit; command_length the first header field.
"""

from __future__ import annotations

from ota_protocols.errors import SmppViolation
from ota_protocols.smpp.command_status import CommandStatus

__all__ = ["DEFAULT_MAX_PDU_LENGTH", "FramingBroken", "PduFramer"]

HEADER_LENGTH = 16
# A submit_sm with a 64 KiB message_payload (§5.3.2.32: 2-octet TLV length) plus
# every mandatory field at its maximum fits in this.
DEFAULT_MAX_PDU_LENGTH = 0x10000 + 0x400


class FramingBroken(SmppViolation):
    """The stream's command_length is impossible; the connection must be closed.

    ``sequence_number`` is the offending PDU's when 16 octets of it arrived, else
    ``None``.  ``complete`` holds the whole PDUs that preceded it in the same
    feed, which the caller should still process before closing.
    """

    def __init__(
        self,
        command_status: int,
        message: str,
        *,
        sequence_number: int | None,
        complete: list[bytes] | None = None,
    ) -> None:
        super().__init__(command_status, message)
        self.sequence_number = sequence_number
        self.complete: list[bytes] = [] if complete is None else complete


class PduFramer:
    """Cuts a byte stream into whole PDUs; feed it any chunking."""

    __slots__ = ("_buffer", "_failure", "max_pdu_length")

    def __init__(self, *, max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH) -> None:
        if max_pdu_length < HEADER_LENGTH:
            raise ValueError(f"max_pdu_length {max_pdu_length} is below the 16-octet header")
        self.max_pdu_length = max_pdu_length
        self._buffer = bytearray()
        self._failure: str | None = None

    @property
    def buffered(self) -> int:
        """Octets held back waiting for the rest of a PDU."""
        return len(self._buffer)

    @property
    def broken(self) -> bool:
        return self._failure is not None

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return every PDU now complete, in order.

        Raises :class:`FramingBroken` on an impossible command_length, and again
        on every later feed: past a bad length there are no PDU boundaries.
        """
        if self._failure is not None:
            raise FramingBroken(CommandStatus.ESME_RINVCMDLEN, self._failure, sequence_number=None)
        buf = self._buffer
        buf += data
        out: list[bytes] = []
        start = 0
        end = len(buf)
        max_length = self.max_pdu_length
        while end - start >= 4:
            length = int.from_bytes(buf[start : start + 4], "big")
            # SMPP 3.4 §3.2: command_length includes the 16-octet header.
            if length < HEADER_LENGTH or length > max_length:
                seq = int.from_bytes(buf[start + 12 : start + 16], "big") if end - start >= 16 else None
                self._failure = (
                    f"command_length {length} outside {HEADER_LENGTH}..{max_length} (SMPP 3.4 §3.2)"
                )
                del buf[:]
                raise FramingBroken(
                    CommandStatus.ESME_RINVCMDLEN, self._failure, sequence_number=seq, complete=out
                )
            if end - start < length:
                break
            out.append(bytes(buf[start : start + length]))
            start += length
        if start:
            del buf[:start]
        return out

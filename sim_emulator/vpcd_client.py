"""The emulated SIM in a PC/SC reader: an asyncio shell around :mod:`sim_emulator.vpcd_link`.

One :class:`VpcdCardClient` per card: a TCP client of vsmartcard's vpcd reader driver (inside
pcscd; 127.0.0.1:35963 for the first reader of ``/etc/reader.conf.d/vpcd``, 35964 for the second,
...). It moves bytes between the socket and the pure :class:`~sim_emulator.vpcd_link.VpcdLink` and
hands each event to the card (:class:`sim_emulator.api.SimCard`): power on / reset -> ``reset()``
(volatile state dropped, files and counters kept), ATR request -> the ATR, C-APDU ->
``exchange()``. T=0 behaviour (``61 XX`` / GET RESPONSE, ``6C XX``) and persistence are the card's
own: this shell adds nothing, so pcsc_scan, opensc-tool or pyscard see what the handset sees.

Errors at the edge: a refused or lost connection is :class:`~ota_protocols.errors.ConnectionLost`
with one line naming the address and the likely cause. The card's tearing hook
(:class:`~sim_emulator.api.CardPoweredOff`) is a card leaving the reader: the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

from ota_protocols.errors import ConnectionLost
from sim_emulator.api import CardPoweredOff, SimCard
from sim_emulator.vpcd_link import (
    ApduReceived,
    AtrRequested,
    FrameIgnored,
    PowerOff,
    PowerOn,
    Reset,
    VpcdLink,
)

__all__ = ["DEFAULT_VPCD_PORT", "VpcdCardClient"]

log = logging.getLogger(__name__)
DEFAULT_VPCD_PORT = 35963  # vpcd.h VPCDPORT; reader k of the driver listens on 35963 + k


def _quick_ack(sock: socket.socket | None) -> Callable[[], None]:
    """ACK at once what vpcd sends. Measured with vpcd 3.3 (Debian 12): it writes a frame's length
    and its payload in two send() calls; Nagle holds the payload until the length is ACKed, and
    Linux delays that ACK (about 40 ms): 44-48 ms per APDU. TCP_QUICKACK, re-armed after every read
    (Linux clears it), brings an APDU round trip through pcscd to about 0.1 ms. Elsewhere: no-op."""
    option = getattr(socket, "TCP_QUICKACK", None)
    if sock is None or option is None:
        return lambda: None

    def arm() -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, option, 1)

    arm()
    return arm


class VpcdCardClient:
    """Card ``card`` inserted in the vpcd reader listening on ``host:port`` until :meth:`run` ends."""

    def __init__(self, card: SimCard, host: str, port: int) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.apdus = 0

    @property
    def where(self) -> str:
        return f"vpcd {self.host}:{self.port}"

    async def run(self, inserted: Callable[[VpcdCardClient], None] | None = None) -> None:
        """Connect, serve until vpcd closes the connection (raises ConnectionLost) or the task is
        cancelled (returns after closing). ``inserted`` is called once connected."""
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConnectionLost(
                f"{self.where}: cannot connect ({why}): is pcscd running with "
                "vsmartcard-vpcd's reader on that port? (/etc/reader.conf.d/vpcd, docs/sim-emulator.md)"
            ) from None
        quick_ack = _quick_ack(writer.get_extra_info("socket"))
        link = VpcdLink()
        atr = self.card.reset()  # inserted: a fresh card, whatever the last session left volatile
        log.info("card %s inserted in %s", self.card.iccid, self.where)
        if inserted is not None:
            inserted(self)
        try:
            while data := await reader.read(65536):
                quick_ack()
                link.receive_data(data)
                for event in link.events():
                    if isinstance(event, ApduReceived):
                        self.apdus += 1
                        link.answer(self.card.exchange(event.apdu))
                    elif isinstance(event, AtrRequested):
                        link.answer(atr)
                    elif isinstance(event, PowerOn | Reset):
                        atr = self.card.reset()
                        log.debug("%s: %s, ATR %s", self.where, type(event).__name__, atr.hex())
                    elif isinstance(event, PowerOff):
                        log.debug("%s: power off", self.where)
                    elif isinstance(event, FrameIgnored):
                        log.warning("%s: offset %d: %s; ignored", self.where, event.offset, event.reason)
                out = link.data_to_send()
                if out:
                    writer.write(out)
                    await writer.drain()
        except CardPoweredOff as exc:
            raise ConnectionLost(f"{self.where}: card left the reader: {exc}") from None
        except (ConnectionError, OSError) as exc:
            raise ConnectionLost(f"{self.where}: connection lost ({exc})") from None
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
        raise ConnectionLost(f"{self.where}: vpcd closed the connection (pcscd stopped?)")

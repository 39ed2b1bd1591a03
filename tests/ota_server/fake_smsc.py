"""A minimal SMSC for the ESME tests: the shared sans-I/O codec (SmppSession, SMSC role) on asyncio.

Scriptable: hold responses (to see the window), throttle (ESME_RTHROTTLED until the
rejected message comes back), drop the connection after a bind, send deliver_sm.
Loopback only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from ota_protocols.smpp.events import BindRequested, PduReceived, ResponseReceived
from ota_protocols.smpp.pdu_codec import DeliverSm, DeliverSmResp, SubmitSm, SubmitSmResp
from ota_protocols.smpp.session import Role, SmppSession

ESME_RTHROTTLED = 0x58


@dataclass
class FakeSmsc:
    system_id: str = "ota"
    password: str = "secret"
    hold: bool = False  # do not answer submit_sm until release()
    throttle_at: set[bytes] = field(default_factory=set)  # short_message that triggers a throttle
    drop_after_bind: int = 0  # close this many connections right after binding
    on_submit: Callable[[SubmitSm], None] | None = None
    accepted: list[bytes] = field(default_factory=list)  # short_message of accepted submits, in order
    rejected: list[bytes] = field(default_factory=list)
    deliver_resps: list[int] = field(default_factory=list)
    binds: int = 0
    max_outstanding: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def __post_init__(self) -> None:
        self._held: list[SubmitSm] = []
        self._throttling: bytes | None = None
        self._session: SmppSession | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._server: asyncio.Server | None = None
        self._message_id = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            if self._writer is not None:
                self._writer.close()
            await self._server.wait_closed()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        session = SmppSession(Role.SMSC)
        self._session, self._writer = session, writer
        try:
            while data := await reader.read(65536):
                session.receive_data(data, loop.time())
                close = False
                for event in session.events():
                    if isinstance(event, BindRequested):
                        if event.pdu.password != self.password:
                            session.reject_bind(0x0E)
                            continue
                        session.accept_bind("FAKE")
                        self.binds += 1
                        if self.drop_after_bind:
                            self.drop_after_bind -= 1
                            close = True
                    elif isinstance(event, PduReceived) and isinstance(event.pdu, SubmitSm):
                        self._held.append(event.pdu)
                        self.max_outstanding = max(self.max_outstanding, len(self._held))
                        if self.on_submit is not None:
                            self.on_submit(event.pdu)
                        if not self.hold:
                            self._answer_held()
                    elif isinstance(event, ResponseReceived) and isinstance(event.response, DeliverSmResp):
                        self.deliver_resps.append(event.response.command_status)
                writer.write(session.data_to_send())
                await writer.drain()
                await self._notify()
                if close:
                    writer.close()
                    return
        except ConnectionError:
            pass
        finally:
            writer.close()
            await self._notify()

    def _answer_held(self) -> None:
        session = self._session
        assert session is not None
        held, self._held = self._held, []
        for pdu in held:
            ud = pdu.short_message
            if self._throttling is not None and ud != self._throttling:
                status = ESME_RTHROTTLED  # bucket still empty
            elif ud in self.throttle_at:
                self.throttle_at.discard(ud)
                self._throttling = ud
                status = ESME_RTHROTTLED
            else:
                if ud == self._throttling:
                    self._throttling = None
                status = 0
            if status:
                self.rejected.append(ud)
                session.send(SubmitSmResp(sequence_number=pdu.sequence_number, command_status=status), 0.0)
            else:
                self.accepted.append(ud)
                self._message_id += 1
                resp = SubmitSmResp(sequence_number=pdu.sequence_number, message_id=f"M{self._message_id}")
                session.send(resp, 0.0)

    async def release(self) -> None:
        self._answer_held()
        await self._flush()

    async def deliver(self, source: str, user_data: bytes, esm_class: int = 0x40) -> None:
        session = self._session
        assert session is not None
        pdu = DeliverSm(
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr=source,
            destination_addr="12345",
            esm_class=esm_class,
            protocol_id=0x7F,
            data_coding=0xF6,
            short_message=user_data,
        )
        session.send(pdu, asyncio.get_running_loop().time())
        await self._flush()

    async def _flush(self) -> None:
        assert self._session is not None and self._writer is not None
        self._writer.write(self._session.data_to_send())
        await self._writer.drain()

"""A minimal asyncio ESME for loopback tests, built on the pure ``SmppSession(Role.ESME)``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from ota_protocols.smpp.events import BindCompleted, BindRejected, PduReceived, ResponseReceived, Unbound
from ota_protocols.smpp.pdu_codec import (
    BindKind,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    Pdu,
    SubmitSm,
    Unbind,
)
from ota_protocols.smpp.session import Role, SmppSession

TIMEOUT = 5.0


class AsyncEsme:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.session = SmppSession(Role.ESME, response_timeout_s=30.0)
        self.loop = asyncio.get_running_loop()
        self.delivers: asyncio.Queue[DeliverSm] = asyncio.Queue()
        self.raw_responses: asyncio.Queue[Pdu] = asyncio.Queue()
        self._waiting: dict[int, asyncio.Future[Pdu]] = {}
        self.deliver_status: Callable[[DeliverSm], int] = lambda pdu: 0
        self.closed = asyncio.Event()
        self.bind_result: asyncio.Future[int] | None = None
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, port: int) -> AsyncEsme:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def _flush(self) -> None:
        data = self.session.data_to_send()
        if data:
            self.writer.write(data)

    async def _read(self) -> None:
        try:
            while data := await self.reader.read(65536):
                self.session.receive_data(data, self.loop.time())
                for event in self.session.events():
                    if isinstance(event, PduReceived) and isinstance(event.pdu, DeliverSm):
                        status = self.deliver_status(event.pdu)
                        self.session.send(
                            DeliverSmResp(sequence_number=event.pdu.sequence_number, command_status=status),
                            self.loop.time(),
                        )
                        if status == 0:
                            self.delivers.put_nowait(event.pdu)
                    elif isinstance(event, ResponseReceived):
                        fut = self._waiting.pop(event.request.sequence_number, None)
                        if fut is not None and not fut.done():
                            fut.set_result(event.response)
                    elif isinstance(event, BindCompleted | BindRejected) and self.bind_result is not None:
                        if not self.bind_result.done():
                            self.bind_result.set_result(getattr(event, "command_status", 0))
                    elif isinstance(event, Unbound):
                        pass
                self._flush()
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed.set()

    async def request(self, pdu: Pdu) -> Pdu:
        sent = self.session.send(pdu, self.loop.time())
        assert sent is not None
        fut: asyncio.Future[Pdu] = self.loop.create_future()
        self._waiting[sent.sequence_number] = fut
        self._flush()
        async with asyncio.timeout(TIMEOUT):
            return await fut

    async def bind(self, system_id: str, password: str, kind: BindKind = BindKind.TRANSCEIVER) -> int:
        self.bind_result = self.loop.create_future()
        self.session.bind(kind, system_id, password, now=self.loop.time())
        self._flush()
        async with asyncio.timeout(TIMEOUT):
            return await self.bind_result

    async def submit(self, **fields: object) -> Pdu:
        return await self.request(SubmitSm(**fields))  # type: ignore[arg-type]

    async def enquire_link(self) -> Pdu:
        return await self.request(EnquireLink())

    async def next_deliver(self, timeout: float = TIMEOUT) -> DeliverSm:
        async with asyncio.timeout(timeout):
            return await self.delivers.get()

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def unbind(self) -> None:
        if not self.session.is_closed:
            await self.request(Unbind())

    async def close(self) -> None:
        self.writer.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()

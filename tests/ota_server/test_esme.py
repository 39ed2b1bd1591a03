"""The smpplib ESME over loopback against a fake SMSC: bind, window, throttling order, reconnect."""

from __future__ import annotations

import asyncio

import pytest

from ota_server.esme import (
    DeliverReceived,
    EsmeEvent,
    EsmeLink,
    EsmeSettings,
    LinkFailed,
    LinkUp,
    SubmitAccepted,
    SubmitRequest,
    Throttled,
)
from tests.ota_server.fake_smsc import FakeSmsc

pytestmark = pytest.mark.integration


class Events:
    def __init__(self) -> None:
        self.items: list[EsmeEvent] = []
        self.changed = asyncio.Event()

    def __call__(self, batch: list[EsmeEvent]) -> None:
        self.items.extend(batch)
        self.changed.set()

    async def wait_for(self, predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.items if isinstance(e, kind)]


def settings(port: int, **kw: object) -> EsmeSettings:
    base: dict[str, object] = dict(
        host="127.0.0.1", port=port, system_id="ota", password="secret", window=4,
        reconnect_attempts=3, reconnect_backoff_s=0.02, throttle_pause_s=0.01,
    )  # fmt: skip
    base.update(kw)
    return EsmeSettings(**base)  # type: ignore[arg-type]


def messages(n: int) -> list[SubmitRequest]:
    return [SubmitRequest(i, "491700000001", bytes((0x02, 0x70, 0x00, i))) for i in range(n)]


@pytest.mark.asyncio
async def test_binds_submits_and_answers_deliver_sm() -> None:
    smsc = FakeSmsc()
    port = await smsc.start()
    events = Events()
    link = EsmeLink(settings(port), asyncio.get_running_loop(), events)
    link.start()
    try:
        await events.wait_for(lambda: events.of(LinkUp))
        link.submit_many(messages(3))
        await events.wait_for(lambda: len(events.of(SubmitAccepted)) == 3)
        assert [e.token for e in events.of(SubmitAccepted)] == [0, 1, 2]
        assert smsc.accepted == [m.short_message for m in messages(3)]
        por = bytes.fromhex("027100000e0ab0001000000000010000")
        await smsc.deliver("491700000001", por)
        await events.wait_for(lambda: events.of(DeliverReceived))
        received = events.of(DeliverReceived)[0]
        assert (received.source_addr, received.esm_class, received.user_data) == ("491700000001", 0x40, por)
        await smsc.wait_for(lambda: smsc.deliver_resps == [0])
    finally:
        await link.close()
        await smsc.stop()


@pytest.mark.asyncio
async def test_window_bounds_the_unanswered_submits() -> None:
    smsc = FakeSmsc(hold=True)
    port = await smsc.start()
    events = Events()
    link = EsmeLink(settings(port, window=3), asyncio.get_running_loop(), events)
    link.start()
    try:
        link.submit_many(messages(10))
        for expected in (3, 6, 9, 10):
            await smsc.wait_for(lambda e=expected: len(smsc._held) + len(smsc.accepted) == e)
            assert len(smsc._held) <= 3
            await smsc.release()
        await events.wait_for(lambda: len(events.of(SubmitAccepted)) == 10)
        assert smsc.max_outstanding == 3
        assert smsc.accepted == [m.short_message for m in messages(10)]
    finally:
        await link.close()
        await smsc.stop()


@pytest.mark.asyncio
async def test_throttling_pauses_the_bind_and_keeps_submission_order() -> None:
    smsc = FakeSmsc()
    batch = messages(12)
    smsc.throttle_at = {batch[2].short_message, batch[7].short_message}
    port = await smsc.start()
    events = Events()
    link = EsmeLink(
        settings(port, window=4, max_messages_per_second=1000), asyncio.get_running_loop(), events
    )
    link.start()
    try:
        link.submit_many(batch)
        await events.wait_for(lambda: len(events.of(SubmitAccepted)) == 12)
        assert smsc.rejected, "the fake SMSC throttled"
        assert smsc.accepted == [m.short_message for m in batch]  # 1 2 3 4 ..., never 1 2 4 3
        assert [e.token for e in events.of(SubmitAccepted)] == list(range(12))
        throttled = events.of(Throttled)
        assert throttled and throttled[0].command_status == 0x58
        assert throttled[0].rate == 500  # halved
    finally:
        await link.close()
        await smsc.stop()


@pytest.mark.asyncio
async def test_reconnects_after_the_smsc_drops_the_link() -> None:
    smsc = FakeSmsc(drop_after_bind=1)
    port = await smsc.start()
    events = Events()
    link = EsmeLink(settings(port), asyncio.get_running_loop(), events)
    link.start()
    try:
        await events.wait_for(lambda: len(events.of(LinkUp)) >= 2)
        link.submit_many(messages(2))
        await events.wait_for(lambda: len(events.of(SubmitAccepted)) == 2)
        assert smsc.binds == 2
    finally:
        await link.close()
        await smsc.stop()


@pytest.mark.asyncio
async def test_unreachable_smsc_fails_after_the_reconnect_attempts() -> None:
    smsc = FakeSmsc()
    port = await smsc.start()
    await smsc.stop()  # nothing listens there any more
    events = Events()
    link = EsmeLink(settings(port, reconnect_attempts=2), asyncio.get_running_loop(), events)
    link.start()
    try:
        await events.wait_for(lambda: events.of(LinkFailed))
        assert "unreachable after 3 attempts" in events.of(LinkFailed)[0].reason
    finally:
        await link.close()


@pytest.mark.asyncio
async def test_wrong_password_fails_without_retrying() -> None:
    smsc = FakeSmsc(password="other")
    port = await smsc.start()
    events = Events()
    link = EsmeLink(settings(port), asyncio.get_running_loop(), events)
    link.start()
    try:
        await events.wait_for(lambda: events.of(LinkFailed))
        assert "refused the bind" in events.of(LinkFailed)[0].reason and smsc.binds == 0
    finally:
        await link.close()
        await smsc.stop()

"""Drive one job machine against a CardSim, with scripted loss (pure: no loop, no sockets)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ota_protocols.apdu import card_commands as cc
from ota_protocols.secured_packet.security_parameters import Spi
from ota_server.command_builder import build_packet
from ota_server.engine.job_machine import step
from ota_server.engine.job_model import (
    Accepted,
    Begin,
    DeadlinePassed,
    Job,
    MessageKind,
    Phase,
    Policy,
    PorArrived,
    Sent,
    Transition,
)
from ota_server.engine.por_verification import PorReport, verify_por
from ota_server.model import Action, Security
from tests.ota_server.cardsim import CardSim, aes_keys

SECURITY = Security(
    spi=Spi.from_bytes(bytes.fromhex("1639")), kic=0x12, kid=0x12, tar=bytes.fromhex("b00010")
)
POLICY = Policy(por_timeout_s=5.0, max_attempts=4, backoff_s=1.0, max_backoff_s=8.0)


def make_actions(n: int) -> tuple[Action, ...]:
    """n actions, each SELECT MF + UPDATE BINARY with distinct data (so journal entries name them)."""
    return tuple(
        Action(f"a{i}", (*cc.select_path("3F00/7F20/6F46"), cc.update_binary(0, bytes((i, 0xA5)))))
        for i in range(n)
    )


@dataclass
class Harness:
    actions: tuple[Action, ...]
    card: CardSim = field(default_factory=lambda: CardSim(aes_keys()))
    policy: Policy = POLICY
    security: Security = SECURITY
    now: float = 0.0
    cntr: int = 0
    job: Job = field(init=False)
    mt: list[tuple[int, bytes]] = field(default_factory=list)  # (cntr, packet) in flight
    por: list[bytes] = field(default_factory=list)  # PoR TP-UDs in flight
    sends: list[tuple[MessageKind, int, int]] = field(default_factory=list)  # (kind, first, count)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.job = Job(n=len(self.actions))
        self.keys = self.card.keys
        self.rng = random.Random(1)

    def apply(self, t: Transition) -> Transition:
        self.job = t.job
        if t.note:
            self.notes.append(t.note)
        # The shell's part: reserve a fresh CNTR, build, "send", report Sent.
        while self.job.phase is Phase.SENDING:
            kind = self.job.next_kind
            assert kind is not None
            self.cntr += 1
            first = self.job.applied
            actions = self.actions[first:] if kind is MessageKind.SCRIPT else ()
            self.sends.append((kind, first, len(actions)))
            self.mt.append((self.cntr, build_packet(self.keys, self.security, self.cntr, actions)))
            self.job = step(self.job, Sent(kind, self.cntr), self.now, self.policy).job
            # The SMSC takes it at once here: the attempt and its timer start (campaigns.md §6.2).
            self.job = step(self.job, Accepted(self.cntr), self.now, self.policy).job
        return t

    def begin(self) -> Transition:
        return self.apply(step(self.job, Begin(), self.now, self.policy))

    def deliver_mt(self, index: int = 0, *, keep: bool = False) -> None:
        _cntr, packet = self.mt[index] if keep else self.mt.pop(index)
        por = self.card.receive(packet)
        if por is not None:
            self.por.append(por)

    def deliver_por(self, index: int = 0, *, keep: bool = False) -> Transition:
        ud = self.por[index] if keep else self.por.pop(index)
        return self.feed_por(ud)

    def feed_por(self, ud: bytes) -> Transition:
        report = verify_por(ud, self.security, self.keys)
        assert isinstance(report, PorReport), report
        return self.apply(step(self.job, PorArrived(report), self.now, self.policy))

    def deadline(self) -> Transition:
        assert self.job.deadline is not None
        self.now = self.job.deadline
        return self.apply(step(self.job, DeadlinePassed(), self.now, self.policy))

    def round_trip(self) -> Transition:
        self.deliver_mt()
        return self.deliver_por()

    def journal_actions(self) -> list[int]:
        """Action numbers in the card's journal, in execution order."""
        return [packet[-2] for _, packet in self.card.journal]

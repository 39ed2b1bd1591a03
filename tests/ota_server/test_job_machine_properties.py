"""Claim 1c under loss, duplication and delay: every action runs exactly once.

A hypothesis state machine interleaves, at random, the delivery, loss, duplication
and reordering of command SMS and PoRs, PoR timeouts and one-shot transient card
failures, against a model card (tests/ota_server/cardsim.py). Afterwards the
network turns lossless and the job is driven to its end. Then the card must have
run every action exactly once, in order, and the server's confirmed counter must
equal the card's.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ota_protocols.apdu.apdu import CommandApdu
from ota_server.engine.job_model import Phase, Policy
from tests.ota_server.harness import Harness, make_actions


class LossyNetwork(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.flaky: set[int] = set()
        self.h = Harness(
            make_actions(4),
            policy=Policy(por_timeout_s=5.0, max_attempts=10_000, backoff_s=1.0, max_backoff_s=4.0),
        )
        self.h.card.fail = self._fail
        self.h.begin()

    def _fail(self, apdu: CommandApdu) -> int | None:
        if apdu.ins == 0xD6 and apdu.data[0] in self.flaky:
            self.flaky.discard(apdu.data[0])
            return 0x6F00  # transient, once
        return None

    @precondition(lambda self: self.h.mt)
    @rule(data=st.data(), duplicate=st.booleans())
    def deliver_command(self, data: st.DataObject, duplicate: bool) -> None:
        index = data.draw(st.integers(0, len(self.h.mt) - 1))
        self.h.deliver_mt(index, keep=duplicate)

    @precondition(lambda self: self.h.mt)
    @rule(data=st.data())
    def lose_command(self, data: st.DataObject) -> None:
        self.h.mt.pop(data.draw(st.integers(0, len(self.h.mt) - 1)))

    @precondition(lambda self: self.h.por)
    @rule(data=st.data(), duplicate=st.booleans())
    def deliver_por(self, data: st.DataObject, duplicate: bool) -> None:
        index = data.draw(st.integers(0, len(self.h.por) - 1))
        self.h.deliver_por(index, keep=duplicate)

    @precondition(lambda self: self.h.por)
    @rule(data=st.data())
    def lose_por(self, data: st.DataObject) -> None:
        self.h.por.pop(data.draw(st.integers(0, len(self.h.por) - 1)))

    @precondition(lambda self: self.h.job.deadline is not None)
    @rule()
    def time_passes(self) -> None:
        self.h.deadline()

    @rule(action=st.integers(0, 3))
    def card_glitch(self, action: int) -> None:
        self.flaky.add(action)

    @invariant()
    def never_twice_and_in_order(self) -> None:
        ran = self.h.journal_actions()
        assert ran == list(range(len(ran))), ran
        assert self.h.job.applied <= len(ran)
        if self.h.job.confirmed is not None:
            assert self.h.job.confirmed <= self.h.card.action_counter

    def teardown(self) -> None:
        h = self.h
        self.flaky.clear()
        for _ in range(500):
            if h.job.phase.terminal:
                break
            if h.mt:
                h.deliver_mt()
            elif h.por:
                h.deliver_por()
            else:
                h.deadline()
        assert h.job.phase is Phase.DONE, (h.job, h.notes[-5:])
        assert h.journal_actions() == [0, 1, 2, 3]
        assert h.job.confirmed == h.card.action_counter == 4
        assert h.job.applied == 4


LossyNetwork.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_every_action_runs_exactly_once_under_loss = LossyNetwork.TestCase

"""The ONE engine as a worker (docs/campaigns.md §6.7), pure: cards added while it runs, released when
they end, a deliver_sm for a card it does not hold forwarded (the shared store's inbox), and a card
taken over from a dead worker resumed with a status query first (the fence rule, §6.3).

Two engines share one campaign; a dict plays the store and CardSims play the cards. The SMSC gives
each PoR to the *other* engine, as handset's SMSC may (any bind of the ESME's system_id).
"""

from __future__ import annotations

import random
from pathlib import Path

from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm
from ota_server.config import load_campaign
from ota_server.engine.campaign import CampaignEngine
from ota_server.engine.events import Acknowledge, DeliverArrived, LinkUp, Submit, SubmitAnswered
from ota_server.engine.records import Commit, JobRow, StoreSnapshot, TargetCard
from ota_server.model import Card, Keyset
from tests.ota_server.cardsim import AES_KIC_KEY, AES_KID_KEY, CardSim, aes_keys

CAMPAIGN = """
[campaign]
name = "w"
concurrency = 4
[smsc]
system_id = "ota"
password = "x"
[targets]
fleet = false
all = true
[security]
spi = "1639"
kic = "12"
kid = "12"
tar = "b00010"
[retry]
por_timeout_s = 5.0
max_attempts = 4
backoff_s = 1.0
[[actions]]
type = "update_binary"
path = "3F00/7F20/6F46"
offset = 0
data = "01"
[[actions]]
type = "update_binary"
path = "3F00/7F20/6F46"
offset = 0
data = "02"
"""

KEYSET = Keyset(
    kvn=1,
    kic_algorithm=CipherAlgorithm.AES_CBC,
    kid_algorithm=IntegrityAlgorithm.AES_CMAC,
    kic=AES_KIC_KEY,
    kid=AES_KID_KEY,
)


def _targets(n: int) -> list[TargetCard]:
    return [
        TargetCard(
            Card(iccid=f"89882110000000{i:05d}", imsi=f"00101{i:010d}", msisdn=f"4917{i:08d}", index=i),
            {1: KEYSET},
        )
        for i in range(n)
    ]


class Lab:
    """Two worker engines, their cards, an SMSC that crosses the PoRs over, and a store of commits."""

    def __init__(self, tmp: Path, n: int) -> None:
        (tmp / "c.toml").write_text(CAMPAIGN)
        self.config = load_campaign(tmp / "c.toml")
        self.targets = _targets(n)
        self.cards = {t.card.msisdn: CardSim(aes_keys()) for t in self.targets}
        self.jobs: dict[tuple[str, str, int], JobRow] = {}
        self.cntrs: dict[tuple[str, int], int] = {}
        self.inbox: list[DeliverArrived] = []
        self.now = 0.0
        self.engines = [self.worker(), self.worker()]

    def worker(self) -> CampaignEngine:
        engine = CampaignEngine(
            self.config, [], StoreSnapshot(), rng=random.Random(1), issued_counter=0, worker=True
        )
        engine.start(self.now)
        engine.handle(LinkUp(0), self.now)
        return engine

    def snapshot(self, cards: list[TargetCard]) -> StoreSnapshot:
        iccids = {t.card.iccid for t in cards}
        return StoreSnapshot(
            cntrs={k: v for k, v in self.cntrs.items() if k[0] in iccids},
            jobs={k: v for k, v in self.jobs.items() if k[0] in iccids},
        )

    def claim(self, engine: CampaignEngine, cards: list[TargetCard]) -> None:
        engine.add_cards(cards, self.snapshot(cards), self.now)

    def commit(self, commit: Commit) -> None:
        for r in commit.reservations:
            self.cntrs[(r.iccid, r.kvn)] = max(self.cntrs.get((r.iccid, r.kvn), 0), r.cntr)
        for record in commit.jobs:
            row = record.row()
            self.jobs[row.key] = row
        self.inbox += [
            DeliverArrived(None, f.msisdn, f.esm_class, f.user_data, relayed=True) for f in commit.forwarded
        ]

    def run_turn(
        self, engine: CampaignEngine, *, deliver_to: CampaignEngine | None, lose_mt: bool = False
    ) -> int:
        """Perform the engine's effects; each PoR goes to ``deliver_to``. Returns the SMS sent."""
        sent = 0
        while effects := engine.effects():
            for effect in effects:
                if isinstance(effect, Commit):
                    self.commit(effect)
                elif isinstance(effect, Submit):
                    sent += 1
                    engine.handle(SubmitAnswered(effect.token, 0, "id"), self.now)
                    pdu = effect.pdu
                    if lose_mt:
                        continue
                    por = self.cards[pdu.destination_addr].receive_segment(pdu.short_message)
                    if por is not None and deliver_to is not None:
                        deliver_to.handle(DeliverArrived(object(), pdu.destination_addr, 0x40, por), self.now)
                elif isinstance(effect, Acknowledge):
                    pass
        return sent

    def relay_inbox(self, owner: CampaignEngine) -> None:
        """The owner reads the inbox rows of the cards it holds (the store joins on its claims)."""
        mine = [item for item in self.inbox if owner.holds(item.source_addr)]
        self.inbox = [item for item in self.inbox if item not in mine]
        for item in mine:
            owner.handle(item, self.now)


def test_cards_added_while_running_end_through_the_other_workers_inbox(tmp_path: Path) -> None:
    lab = Lab(tmp_path, 6)
    a, b = lab.engines
    assert not a.finished and not b.finished  # intake open: no cards yet is not the end
    lab.claim(a, lab.targets[:3])
    lab.claim(b, lab.targets[3:])
    for _ in range(10):
        lab.run_turn(a, deliver_to=b)  # every PoR of a's cards reaches b, and b's reach a
        lab.run_turn(b, deliver_to=a)
        lab.relay_inbox(a)  # the owners read the inbox
        lab.relay_inbox(b)
        for engine in (a, b):
            engine.release_cards(engine.settled_cards())
    assert {row.state for row in lab.jobs.values()} == {"done"} and len(lab.jobs) == 6
    for card in lab.cards.values():
        assert [ac for ac, _ in card.journal] == [1, 2]  # each action once, in order
    assert a.stats.por_received == 3 and b.stats.por_received == 3
    assert not any(engine.holds(t.card.msisdn) for engine in (a, b) for t in lab.targets)  # all released
    assert not a.finished
    a.close_intake(lab.now)
    b.close_intake(lab.now)
    assert a.finished and b.finished


def test_a_dead_workers_card_is_resumed_with_a_status_query_not_a_resend(tmp_path: Path) -> None:
    lab = Lab(tmp_path, 1)
    a, b = lab.engines
    lab.claim(a, lab.targets)
    lab.run_turn(a, deliver_to=None)  # the script ran on the card, its PoR was lost; a dies here
    card = lab.cards[lab.targets[0].card.msisdn]
    assert [ac for ac, _ in card.journal] == [1, 2]
    (row,) = lab.jobs.values()
    assert row.state == "waiting" and row.extra["script_cntr"] == 1
    lab.claim(b, lab.targets)  # b takes the card over from what a made durable
    sent_kinds = []
    for _ in range(5):
        while effects := b.effects():
            for effect in effects:
                if isinstance(effect, Commit):
                    lab.commit(effect)
                    sent_kinds += [r.kind for r in effect.reservations]
                elif isinstance(effect, Submit):
                    b.handle(SubmitAnswered(effect.token, 0, "id"), lab.now)
                    por = card.receive_segment(effect.pdu.short_message)
                    assert por is not None
                    b.handle(DeliverArrived(object(), effect.pdu.destination_addr, 0x40, por), lab.now)
    assert sent_kinds == ["query"]  # the fence: it asked what ran, and sent no script again
    (row,) = lab.jobs.values()
    assert row.state == "done" and row.applied == 2 and row.counter_path == "query"
    assert [ac for ac, _ in card.journal] == [1, 2]
    assert b.settled_cards() == [lab.targets[0].card.iccid]


def test_a_relayed_deliver_for_a_card_not_held_is_never_forwarded_again(tmp_path: Path) -> None:
    lab = Lab(tmp_path, 1)
    a, _ = lab.engines
    msisdn = lab.targets[0].card.msisdn
    a.handle(DeliverArrived(("inbox", 1), msisdn, 0x40, b"\x02\x71\x00" + bytes(20), relayed=True), lab.now)
    commits = [e for e in a.effects() if isinstance(e, Commit)]
    assert all(not c.forwarded for c in commits)
    assert a.stats.por_unmatched + a.stats.por_rejected == 1
    a.handle(DeliverArrived(("smsc", 2), msisdn, 0x40, b"\x02\x71\x00" + bytes(20)), lab.now)
    (commit,) = [e for e in a.effects() if isinstance(e, Commit)]
    assert [f.msisdn for f in commit.forwarded] == [msisdn]  # straight from the SMSC: to its owner

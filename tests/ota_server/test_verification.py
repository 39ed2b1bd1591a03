"""The run's proof from the network report: lost, duplicated, counter mismatches."""

from __future__ import annotations

from ota_server.engine.job_model import Job, Phase
from ota_server.model import Card
from ota_server.service import verification
from tests.ota_server.harness import make_actions

ACTIONS = make_actions(3)
CARD = Card(iccid="89001", imsi="001", msisdn="4917")


def network(journal_actions: list[int], counter: int, start: int = 10) -> dict[str, object]:
    journal = [{"counter": 5, "apdu": "00d6000002ffa5"}]  # before the campaign: ignored
    journal += [
        {"counter": start + k + 1, "apdu": ACTIONS[a].counted.encode_t0().hex().upper()}
        for k, a in enumerate(journal_actions)
    ]
    return {"cards": [{"iccid": "89001", "applications": [{"tar": "b00010", "action_counter": counter,
                                                              "journal": journal}]}]}  # fmt: skip


def job(applied: int, confirmed: int) -> Job:
    return Job(n=3, phase=Phase.DONE, applied=applied, confirmed=confirmed, start_counter=10)


def test_a_clean_run_proves_itself() -> None:
    v = verification([(CARD, job(3, 13))], ACTIONS, "b00010", network([0, 1, 2], 13))
    assert (v["lost_actions"], v["duplicated_actions"], v["counter_mismatches"]) == (0, 0, 0)


def test_lost_duplicated_and_mismatch_are_counted() -> None:
    v = verification([(CARD, job(3, 13))], ACTIONS, "b00010", network([0, 1, 1], 13))
    assert (v["lost_actions"], v["duplicated_actions"], v["counter_mismatches"]) == (1, 1, 0)
    v = verification([(CARD, job(2, 12))], ACTIONS, "b00010", network([0, 1, 2], 13))
    assert (v["lost_actions"], v["duplicated_actions"], v["counter_mismatches"]) == (0, 1, 1)

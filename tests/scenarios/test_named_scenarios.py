"""Named fault scenarios over real SMPP on loopback, each proved by the cards' own journals.

Every scenario runs a small lab (tests/scenarios/labs.py) with deterministic, scripted radio faults
(``[[radio.script]]``, handset/radio_link.py) and asserts the invariants: every action of the
campaign applied exactly once on every card (journal), the server's confirmed counter equal to the
card's, no card stuck.  Patent WO 00/07153: figure 2 (the script is lost), figure 3 (the PoR is lost),
claim 1c (the last x actions missing are resent, nothing else).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from handset.radio_link import OfflineModel, RadioConfig, RadioLink
from ota_lab.draw import draw_mix
from ota_protocols.fleet import FleetSpec, derive_card
from tests.scenarios.labs import (
    ADN1,
    FIVE_ACTIONS,
    MISSING_EF,
    SPN,
    THREE_ACTIONS,
    assert_proved,
    run,
    scenario_lab,
)

pytestmark = pytest.mark.integration

DEMO_FLEET = FleetSpec(seed="ota-sim-demo", count=1)
FIRST_MSISDN = derive_card(DEMO_FLEET, 0).msisdn


def test_lost_script_patent_figure_2(tmp_path: Path) -> None:
    """The script never reaches the card (dropped on the air, and its validity ends before the SMSC
    retries): the status query's counter shows x = n, so all n actions go again, once."""
    lab = scenario_lab(
        tmp_path,
        actions=THREE_ACTIONS,
        script=[{"direction": "mt", "action": "drop", "nth": 1}],  # the first MT of each phone: the script
        timing={"validity_s": 0.3},  # no store-and-forward retry: the script is really lost
    )
    result = run(lab, tmp_path)
    assert_proved(result, actions=3)
    assert result.network["radio_lost"]["mt"] == 2 and result.network["mt_expired"] >= 2
    for card in result.cards:
        assert card["resent_actions"] == 3 and card["queries"] >= 1, card


def test_lost_por_patent_figure_3(tmp_path: Path) -> None:
    """The script runs, its PoR (SMS-SUBMIT, SPI 1639) is lost: the query's counter shows x = 0 and
    nothing is resent; the job is confirmed by the query."""
    lab = scenario_lab(
        tmp_path,
        actions=THREE_ACTIONS,
        script=[{"direction": "mo", "action": "drop", "nth": 1, "tpdu": "sms-submit", "ud_prefix": "027100"}],
    )
    result = run(lab, tmp_path)
    assert_proved(result, actions=3)
    for card in result.cards:
        assert card["resent_actions"] == 0 and card["counter_path"] == "query", card


@pytest.mark.parametrize("lose_por", [False, True], ids=["por-arrives", "por-lost"])
def test_partial_execution_with_a_failing_action(tmp_path: Path, lose_por: bool) -> None:
    """Action 3 of 5 fails with 6A82 (claim 1c): the counter shows 2, the job ends partial with the
    last 3 not executed; with the PoR lost the query finds x = 3, resends them, and they fail again."""
    actions = [SPN, ADN1, MISSING_EF, *FIVE_ACTIONS[2:4]]
    script = (
        [{"direction": "mo", "action": "drop", "nth": 1, "tpdu": "sms-submit", "ud_prefix": "027100"}]
        if lose_por
        else None
    )
    result = run(scenario_lab(tmp_path, actions=actions, script=script), tmp_path)
    assert_proved(result, actions=5, state="partial", executed=2)
    for card in result.cards:
        assert "last 3 not executed" in card["reason"] and "6A82" in card["reason"], card


def test_duplicated_mt_runs_once(tmp_path: Path) -> None:
    """Every MT arrives twice (the copy 50 ms later): the copy is refused CNTR low, each action once."""
    lab = scenario_lab(
        tmp_path,
        actions=THREE_ACTIONS,
        script=[{"direction": "mt", "action": "duplicate", "nth": 1, "count": 0, "delay_s": 0.05}],
    )
    result = run(lab, tmp_path)
    assert_proved(result, actions=3)
    assert result.network["radio_duplicated"]["mt"] >= 2


def test_reordered_mt_old_script_arrives_after_the_resend(tmp_path: Path) -> None:
    """The script is held on the air for 2.5 s (longer than the PoR timeout; its validity ends, so the
    SMSC does not retry): the server queries, finds x = n, resends the actions with a fresh CNTR, and
    only then does the old script arrive: CNTR low, nothing runs twice."""
    lab = scenario_lab(
        tmp_path,
        actions=THREE_ACTIONS,
        script=[{"direction": "mt", "action": "delay", "nth": 1, "delay_s": 2.5}],
        timing={"validity_s": 0.3},
    )
    result = run(lab, tmp_path)
    assert_proved(result, actions=3)
    for card in result.cards:
        assert card["resent_actions"] == 3, card  # the late copy's PoR (CNTR low) is stale: dropped


def test_corrupted_mt_never_runs_a_damaged_script(tmp_path: Path) -> None:
    """One bit of the script flipped on the air: the card refuses it (status 01, RC/CC/DS failed,
    TS 102 225 §5.1.2) and nothing runs; safety holds: no action lost, duplicated or miscounted."""
    lab = scenario_lab(
        tmp_path, actions=THREE_ACTIONS, script=[{"direction": "mt", "action": "corrupt", "nth": 1}]
    )
    result = run(lab, tmp_path)
    inv = result.invariants
    assert result.error is None
    assert (inv.lost, inv.duplicated, inv.mismatches, inv.stuck) == (0, 0, 0, 0), inv
    assert result.network["radio_corrupted"]["mt"] == 2
    for card in result.cards:
        assert any(s.startswith("01") for s in card["statuses"]), card


def test_corrupted_mt_is_retried_and_every_action_runs_once(tmp_path: Path) -> None:
    """A corrupted script earns PoR 01 (no script ran); the server fences with a status query, then
    resends all three actions: every action runs exactly once (docs/campaigns.md, refused statuses)."""
    lab = scenario_lab(
        tmp_path, actions=THREE_ACTIONS, script=[{"direction": "mt", "action": "corrupt", "nth": 1}]
    )
    assert_proved(run(lab, tmp_path), actions=3)


def _seed_tearing_the_first_script(lab: object, probability: float, segments: int = 3) -> int:
    """A lab seed whose network RNG tears the first script after k in 1..3 of its actions.

    The script of five actions travels as a concatenated SMS (up to three segments, TS 23.040
    §9.2.3.24.1); the ME draws a tear before every SMS-PP download ENVELOPE and only the one that
    completes the command packet uses it.  So: a seed whose first ``segments`` draws all tear after
    k >= 1 (the tear is the only consumer of that RNG here: no other random fault is on)."""
    for seed in range(1, 5000):  # bounded, deterministic
        rng = random.Random(draw_mix(lab, seed).radio_seed)  # type: ignore[arg-type]
        link = RadioLink(RadioConfig(tear_probability=probability))
        draws = [link.draw_tear(rng) for _ in range(segments)]
        if all(k is not None and k >= 1 for k in draws):
            return seed
    raise AssertionError("no seed tears the first script mid-way")


def test_tear_in_the_middle_of_a_five_action_script(tmp_path: Path) -> None:
    """The card loses power after k (1..3) of 5 actions (the k done stay, with their counter): no PoR,
    the SMSC's retry gets CNTR low, the query shows x = 5 - k, exactly those are resent."""
    lab = scenario_lab(
        tmp_path, actions=FIVE_ACTIONS, fleet=1, faults={"tear": 0.4}, timing={"max_attempts": 12}
    )
    result = run(lab, tmp_path, seed=_seed_tearing_the_first_script(lab, 0.4))
    assert_proved(result, actions=5)
    assert result.network_report is not None
    assert result.network_report["smsc"]["me"]["card_torn"] >= 1
    (card,) = result.cards
    assert card["resent_actions"] >= 2, card  # at most 3 of 5 ran before the cut: the rest went again


def _seed_with_long_first_outage(lab: object, msisdn: str, probability: float, mean: float) -> int:
    """A lab seed whose phone starts OUT of coverage for at least 2 s (the offline model's own draw,
    handset/radio_link.py OfflineModel, from the phone's generator seeded by radio seed and MSISDN)."""
    for seed in range(1, 500):
        radio_seed = draw_mix(lab, seed).radio_seed  # type: ignore[arg-type]
        link = RadioLink(
            RadioConfig(offline=OfflineModel(offline_probability=probability, mean_offline_s=mean))
        )
        rng = random.Random(f"{radio_seed}/offline/{msisdn}")
        if link.is_offline(msisdn, 0.0, rng) and (link.online_again_at(msisdn) or 0.0) >= 2.0:
            return seed
    raise AssertionError("no seed starts the phone offline long enough")


def test_phone_offline_for_a_long_time(tmp_path: Path) -> None:
    """The phone is out of coverage for seconds (many PoR timeouts): the SMSC stores the script and
    the queries, delivers them in order when the phone is back; the server never resends blindly."""
    lab = scenario_lab(
        tmp_path,
        actions=THREE_ACTIONS,
        fleet=1,
        faults={"offline": 0.5, "mean_offline_s": 3.0},
        timing={"max_attempts": 30},
    )
    seed = _seed_with_long_first_outage(lab, FIRST_MSISDN, 0.5, 3.0)
    result = run(lab, tmp_path, seed=seed)
    assert_proved(result, actions=3)
    assert result.network_report is not None
    assert result.network_report["smsc"]["mt_offline_deferrals"] >= 1
    (card,) = result.cards
    assert card["resent_actions"] == 0, card  # the script ran once when the phone came back


def test_smsc_restart_mid_campaign(tmp_path: Path) -> None:
    """The SMSC drops every SMPP connection 0.2 s into the campaign and stays down 1 s (MTs held on the
    air 0.5 s, so scripts are in flight): the ESME rebinds, the PoRs stored meanwhile arrive, every job
    ends confirmed with each action once."""
    lab = scenario_lab(
        tmp_path,
        actions=THREE_ACTIONS,
        fleet=6,
        radio={"mt": {"delay_s": 0.5}},
        events={"smsc_restart_at_s": [0.2], "smsc_outage_s": 1.0},
        timing={"por_timeout_s": 1.5, "max_attempts": 10},
    )
    result = run(lab, tmp_path)
    assert_proved(result, actions=3)
    assert result.network["restarts"] == 1
    assert result.events == ["smsc restart at 0.2s"]

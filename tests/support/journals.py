"""The exactly-once check of the loopback tests: the server's record of every card (its report rows)
against the card's own journal (the network's report): no action lost, none twice, counters equal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ota_server.engine.job_model import Job
from ota_server.model import Action, Card
from ota_server.report import verify_jobs


def check_journals(
    cards: Sequence[dict[str, Any]], actions: tuple[Action, ...], network: dict[str, Any]
) -> dict[str, Any]:
    """Assert every card of the report against its journal; returns the check's counts."""
    jobs = [
        (
            Card(iccid=c["iccid"], imsi="", msisdn=c["msisdn"]),
            Job(n=c["actions"], applied=c["executed"], confirmed=c["confirmed_counter"], start_counter=0),
            actions,
            c["tar"],
        )
        for c in cards
    ]
    check = verify_jobs(jobs, network)
    assert check["cards_missing_from_network_report"] == 0
    lost_doubled_mismatched = (
        check["lost_actions"],
        check["duplicated_actions"],
        check["counter_mismatches"],
    )
    assert lost_doubled_mismatched == (0, 0, 0), check
    return check

"""``GET /metrics`` of ``ota-server serve``: the hosted campaigns' figures in Prometheus text format.

Clauses: Prometheus exposition format 0.0.4 (``ota_protocols.prometheus``); SMPP 3.4 §5.1.3
(command_status names); TS 102 225 §5.2 (PoR response status).

Every count is the engine's own (:class:`~ota_server.report.Stats`, read at scrape time), labelled
by campaign; a campaign hosted again after a restart of the server starts its counters from zero,
which Prometheus reads as a counter reset. Jobs by state come from the store, so they include
campaigns this process does not run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ota_protocols.prometheus import Family, render
from ota_protocols.smpp.command_status import status_name

if TYPE_CHECKING:
    from ota_server.http.platform import Platform


def metrics_text(platform: Platform) -> str:
    submitted = Family("ota_submit_sm_total", "counter", "submit_sm PDUs released to the SMSC (segments)")
    answered = Family(
        "ota_submit_sm_resp_total",
        "counter",
        "submit_sm_resp by command_status: 0 accepted, else refused (throttling included)",
    )
    accepted = Family("ota_messages_accepted_total", "counter", "SMS segments the SMSC accepted")
    failed = Family(
        "ota_messages_failed_total", "counter", "submit_sm refused by the SMSC or left unanswered"
    )
    pors = Family("ota_por_total", "counter", "PoRs matched to a job, by response status (TS 102 225 §5.2)")
    rejected = Family("ota_por_rejected_total", "counter", "PoRs that failed verification")
    unmatched = Family("ota_por_unmatched_total", "counter", "PoRs that matched no job")
    latency = Family(
        "ota_por_latency_seconds",
        "histogram",
        "from the SMSC's acceptance of a job's latest message to its PoR",
    )
    links = Family("ota_link_bound", "gauge", "1 when the campaign's SMPP bind is bound")
    jobs = Family("ota_jobs", "gauge", "jobs (card x step) by stored state")
    state = Family("ota_campaign_state", "gauge", "1 for the campaign's state in the store")
    active = Family("ota_campaigns_active", "gauge", "campaigns this server runs now")
    for name, hosted in platform.hosted.items():
        engine = hosted.runner.engine
        if engine is None:
            continue
        stats = engine.stats
        submitted.add(stats.submits, campaign=name)
        for status, count in sorted(stats.submit_status.items()):
            answered.add(
                count, campaign=name, command_status=f"0x{status:08X}", status_name=status_name(status)
            )
        accepted.add(stats.submit_accepted, campaign=name)
        failed.add(stats.submit_failed, campaign=name)
        for status, count in sorted(stats.por_status.items()):
            pors.add(count, campaign=name, status=f"{status:02X}")
        rejected.add(stats.por_rejected, campaign=name)
        unmatched.add(stats.por_unmatched, campaign=name)
        latency.add(stats.por_latency, campaign=name)
        for bind, bound in enumerate(engine.links_bound()):
            links.add(1 if bound and hosted.active else 0, campaign=name, bind=str(bind))
    for row in platform.store.campaigns():
        state.add(1, campaign=row.name, state=row.state)
        for job_state, count in sorted(platform.store.job_counts(row.name).items()):
            jobs.add(count, campaign=row.name, state=job_state)
    active.add(sum(1 for h in platform.hosted.values() if h.active))
    return render(
        [
            submitted,
            answered,
            accepted,
            failed,
            pors,
            rejected,
            unmatched,
            latency,
            links,
            jobs,
            state,
            active,
        ]
    )

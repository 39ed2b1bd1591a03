"""``handset serve --metrics HOST:PORT``: the SMSC side's figures in Prometheus text format.

Clauses: Prometheus exposition format 0.0.4 (``ota_protocols.prometheus``); SMPP 3.4 §5.1.3
(command_status names); house-style §2.3 (the listener is bounded: uvicorn's connection limit,
keep-alive timeout and header size; GET only, no body read).

Every count is the SMSC's or the radio network's own (``SmscServer.counters`` and
``submit_status``, ``Network.counters``), read at scrape time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ota_protocols.prometheus import CONTENT_TYPE, Family, render
from ota_protocols.smpp.command_status import status_name

if TYPE_CHECKING:
    from handset.service import HandsetService

# network_core.BASE_COUNTERS that are MT outcomes, as one labelled family.
_MT = ("accepted", "transmissions", "offline_deferrals", "rp_timeouts", "delivered", "failed", "expired")


def metrics_text(service: HandsetService) -> str:
    submit = Family(
        "handset_submit_sm_total", "counter", "submit_sm answered, by command_status (0 accepted)"
    )
    deliver = Family(
        "handset_deliver_sm_total", "counter", "deliver_sm to the ESMEs: sent, answered ok, failed, retries"
    )
    queue = Family("handset_mt_queue_depth", "gauge", "MT messages stored and not yet delivered or expired")
    mt = Family("handset_mt_total", "counter", "MT messages by outcome on the radio side")
    pors = Family("handset_mo_pors_total", "counter", "PoRs (MO SMS-SUBMIT) from the cards, forwarded")
    binds = Family("handset_binds", "gauge", "bound ESME sessions by system_id and bind type")
    bind_events = Family("handset_bind_total", "counter", "bind requests by result")
    connections = Family("handset_connections", "gauge", "open SMPP connections")
    server = service.server
    network = service.network
    if server is not None:
        for status, count in sorted(server.submit_status.items()):
            submit.add(count, command_status=f"0x{status:08X}", status_name=status_name(status))
        c = server.counters
        for result in ("sent", "ok", "failed", "retries"):
            deliver.add(c[f"deliver_sm_{result}"], result=result)
        bound: dict[tuple[str, str], int] = {}
        for system_id, kind in server.bound_esmes:
            bound[(system_id, kind)] = bound.get((system_id, kind), 0) + 1
        for (system_id, kind), count in sorted(bound.items()):
            binds.add(count, system_id=system_id, bind_type=kind.lower())
        for result, key in (("ok", "binds"), ("failed", "bind_failures"), ("throttled", "binds_throttled")):
            bind_events.add(c[key], result=result)
        connections.add(server.open_connections)
    if network is not None:
        counters: dict[str, Any] = network.counters
        queue.add(network.queued)
        for outcome in _MT:
            mt.add(counters.get(f"mt_{outcome}", 0), outcome=outcome)
        pors.add(counters.get("pors", 0))
    return render([submit, deliver, queue, mt, pors, binds, bind_events, connections])


def metrics_app(service: HandsetService) -> Any:
    """A Starlette app with ``GET /metrics`` only."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def metrics(request: Request) -> Response:
        return Response(metrics_text(service), media_type=CONTENT_TYPE)

    return Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])

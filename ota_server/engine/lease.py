"""PURE: one runner per campaign and store (docs/campaigns.md §6.4).

A runner takes the campaign's lease (pid, host, a random token, heartbeat) in the same transaction
that reads it. The decision is here; the stores (SQLite now, any other later) only execute it:

* no holder, or the holder is this runner (same token): granted;
* a holder on this host whose process is gone (the shell checks the pid): taken over at once;
* a holder whose heartbeat is older than ``ttl_s`` (a crashed runner on another host, or a hung
  one): taken over;
* otherwise refused, naming the live holder (the CLI exits 2 with that line).

A taken-over lease changes the token, so a runner that was only slow finds, at its next heartbeat,
that the lease is no longer its own and stops before it sends anything more.
"""

from __future__ import annotations

from dataclasses import dataclass

from ota_server.engine.records import CampaignRow

__all__ = ["LEASE_TTL_S", "LeaseDecision", "decide_lease"]

LEASE_TTL_S = 15.0  # heartbeats every poll (0.2 s by default): 75 missed ones


@dataclass(frozen=True, slots=True)
class LeaseDecision:
    granted: bool
    takeover: bool = False
    holder: str = ""  # "pid 123 on host h, heartbeat 0.4 s ago"

    @property
    def refusal(self) -> str:
        return f"campaign is run by {self.holder}: one runner per campaign and database"


def decide_lease(
    row: CampaignRow | None,
    *,
    token: str,
    host: str,
    now: float,
    holder_alive: bool | None,
    ttl_s: float = LEASE_TTL_S,
) -> LeaseDecision:
    """``holder_alive``: whether the holder's pid runs, when it is on this host (None elsewhere)."""
    if row is None or row.runner_pid is None or row.runner_token in (None, token):
        return LeaseDecision(True)
    age = now - row.heartbeat_at if row.heartbeat_at is not None else float("inf")
    holder = f"pid {row.runner_pid} on host {row.runner_host or '?'}, heartbeat {age:.1f} s ago"
    if row.runner_host == host and holder_alive is False:
        return LeaseDecision(True, takeover=True, holder=holder)
    if age > ttl_s:
        return LeaseDecision(True, takeover=True, holder=holder)
    return LeaseDecision(False, holder=holder)

"""PURE: a campaign as the engine reads it: frozen dataclasses, loaded from TOML by
:mod:`ota_server.config` (which checks every value and names the key path of any error).

Clauses: docs/campaigns.md (every section and key), TS 102 225 §5.1.1 (security), SMPP 3.4 §2.7
(window) and §7.1.1 (validity period).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from ota_server.model import Action, Card, Security

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CampaignConfig",
    "CampaignSection",
    "NetworkSection",
    "NumberRange",
    "PacingSection",
    "RetrySection",
    "SmscSection",
    "StepConfig",
    "TargetCsv",
    "TargetsSection",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignSection:
    name: str
    deadline_s: float = 3600.0  # jobs still open then end as "pending" (seconds after the start)
    concurrency: int = 1000  # jobs with a message in flight at once
    validity_period_s: float | None = None  # SMPP validity_period of every submit_sm (relative)
    deadline: datetime | None = None  # absolute end (TOML date-time): open jobs then end "pending"
    start_at: datetime | None = None  # absolute start (TOML date-time): the runner waits until then


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkSection:
    handset_config: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SmscSection:
    system_id: str | None = None  # None: the first [[smsc.esmes]] of the embedded network
    password: str | None = field(default=None, repr=False)
    system_type: str = ""
    source_addr: str = "12345"
    source_addr_ton: int = 1
    source_addr_npi: int = 1
    dest_addr_ton: int = 1
    dest_addr_npi: int = 1
    registered_delivery: bool = False
    window: int = 64
    max_messages_per_second: float = 0.0  # 0 = unlimited; segments count
    response_timeout_s: float = 10.0
    enquire_link_s: float = 30.0
    reconnect_backoff_s: float = 0.5
    # docs/campaigns.md §6.2: no bind for this long (at start, or after the link went down) fails the
    # run (exit 1 with the reason); never a per-card failure.
    reconnect_window_s: float = 30.0
    bind_timeout_s: float = 5.0  # no bind_resp in time: not an SMSC (or a dead one)


@dataclass(frozen=True, slots=True)
class NumberRange:
    """An inclusive range of ICCIDs or MSISDNs, compared as numbers of the same length."""

    first: str
    last: str

    def __contains__(self, value: object) -> bool:
        return (
            isinstance(value, str)
            and len(value) == len(self.first)
            and value.isdigit()
            and int(self.first) <= int(value) <= int(self.last)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetCsv:
    """``[targets] csv``: the cards listed (by ``iccid`` or ``msisdn`` column) and their parameters."""

    path: Path
    key: str  # "iccid" or "msisdn"
    columns: tuple[str, ...]
    rows: dict[str, dict[str, str]]  # key value -> row
    lines: dict[str, int]  # key value -> line number in the file (for error messages)


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetsSection:
    """Which cards: the base set (``fleet`` or ``all``), narrowed by every selector given (AND across
    kinds, OR within one: any range, any tag)."""

    fleet: bool = True  # the cards of [network].handset_config's [fleet] (imported into the store)
    all: bool = False  # every card of the store (``ota-server cards import``)
    iccid_ranges: tuple[NumberRange, ...] = ()
    msisdn_ranges: tuple[NumberRange, ...] = ()
    tags: tuple[str, ...] = ()
    csv: TargetCsv | None = None

    def selects(self, card: Card) -> bool:
        if self.iccid_ranges and not any(card.iccid in r for r in self.iccid_ranges):
            return False
        if self.msisdn_ranges and not any(card.msisdn in r for r in self.msisdn_ranges):
            return False
        if self.tags and not set(self.tags) & set(card.tags):
            return False
        return not (self.csv is not None and self.csv_row(card) is None)

    def csv_row(self, card: Card) -> dict[str, str] | None:
        if self.csv is None:
            return None
        return self.csv.rows.get(card.iccid if self.csv.key == "iccid" else card.msisdn)


@dataclass(frozen=True, slots=True, kw_only=True)
class PacingSection:
    """``[pacing]``: per bind. Every SMS segment counts against the rate."""

    messages_per_second: float = 0.0  # per bind; 0 = unlimited
    window: int = 64  # submit_sm outstanding per bind
    binds: int = 1  # ESME connections (transceiver binds) sharing the load


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrySection:
    por_timeout_s: float = 5.0
    max_attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StepConfig:
    """One ``[[steps]]`` entry (or the top-level ``[security]`` + ``[[actions]]``): one (card, TAR) job.

    ``per_card`` holds the actions of each CSV row when an action uses ``"{csv.COLUMN}"``; those
    were all built (and so checked) when the file loaded."""

    name: str
    security: Security
    actions: tuple[Action, ...]  # the actions (the first CSV row's when they are per card)
    per_card: dict[str, tuple[Action, ...]] | None = None  # CSV key (iccid / msisdn) -> actions
    run_if: str = "confirmed"  # "confirmed": only after the card's previous step was confirmed; "always"

    def actions_for(self, csv_key: str | None) -> tuple[Action, ...]:
        if self.per_card is None or csv_key is None:
            return self.actions
        return self.per_card[csv_key]


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignConfig:
    source: Path
    campaign: CampaignSection
    network: NetworkSection
    smsc: SmscSection
    targets: TargetsSection
    pacing: PacingSection
    retry: RetrySection
    steps: tuple[StepConfig, ...]

    @property
    def security(self) -> Security:
        """The first step's security (a one-step campaign's only one)."""
        return self.steps[0].security

    @property
    def actions(self) -> tuple[Action, ...]:
        return self.steps[0].actions

"""Many workers on one campaign: their leases, card claims, bind slots and inbox in the shared store.

Clauses: docs/campaigns.md §6.7 (workers), §6.3 (the fence rule decides what a taken-over card does
first), §6.4 (one runner per campaign: a single runner and workers exclude each other), house-style
§2 (write-ahead: a worker's Commit holds its CNTR reservations before its SMS leave).

Glossary: worker one ``ota-server campaign run --worker`` process; lease a worker's row, alive while
``expires_at`` (the database's clock) is ahead, renewed by every heartbeat; claim a campaign card
whose ``worker`` column names a worker; bind slot one of the campaign's ``[pacing] binds``.

Rules (each is one transaction):

* a claim is valid while its worker's row exists and has not expired; a worker whose lease expired
  (SIGKILL, a stall) is *reaped* by any other: its row is deleted and its claims and bind slots are
  set free, so the next claims take its cards over;
* claims are taken in card order with ``SELECT ... FOR UPDATE SKIP LOCKED`` (PostgreSQL), so N
  workers claiming at once never wait for or collide with each other;
* every Commit of a worker first checks, in its own transaction, that the worker's lease is live
  (``FOR SHARE`` on its row: a reaper's DELETE waits for the commit, or the commit waits for the
  reap and then fails) and that it claims every card the Commit writes; otherwise
  :class:`LeaseLost` and the worker stops before sending anything more (fencing a stalled zombie);
* a deliver_sm received for a card another worker owns is kept in ``inbox`` by the receiver's Commit
  and read by the worker that claims the card (join on the claims), deleted once handled; the last
  worker out moves what nobody read (late copies for ended cards) into the history as unclaimed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ota_server.engine.lease import LEASE_TTL_S
from ota_server.engine.records import Commit

if TYPE_CHECKING:
    from ota_server.card_store import CardStore

__all__ = ["WORKER_TTL_S", "InboxItem", "WorkerStore"]

WORKER_TTL_S = 10.0  # heartbeats every poll (0.2 s by default): 50 missed ones


def session_tag(worker: str) -> str:
    """The database session label of a worker's connection (Backend.end_sessions)."""
    return f"ota-worker {worker}"


@dataclass(frozen=True, slots=True)
class InboxItem:
    id: int
    msisdn: str
    esm_class: int
    user_data: bytes
    receipted_message_id: str | None
    message_state: int | None


class WorkerStore:
    """One worker's view of the shared store (use from the worker's event loop only)."""

    def __init__(self, store: CardStore, campaign: str, worker: str, *, ttl_s: float = WORKER_TTL_S) -> None:
        self.store = store
        self.db = store.backend
        self.campaign = campaign
        self.worker = worker
        self.ttl_s = ttl_s
        store.forward_to = campaign

    def now(self) -> float:
        return float(self.db.execute(f"SELECT {self.db.now_sql}").fetchone()[0])

    # ------------------------------------------------------------------ joining and leaving

    def enroll(self, iccids: Sequence[str]) -> None:
        """The campaign's cards in order (idempotent: the first worker writes them, the others find them)."""
        with self.db.transaction():
            self.db.lock(f"campaign {self.campaign}")
            known = self.db.execute(
                "SELECT COUNT(*) FROM campaign_cards WHERE campaign = ?", (self.campaign,)
            ).fetchone()[0]
            if known == len(iccids):
                return
            self.db.executemany(
                "INSERT INTO campaign_cards (campaign, iccid, seq) VALUES (?,?,?) ON CONFLICT DO NOTHING",
                [(self.campaign, iccid, seq) for seq, iccid in enumerate(iccids)],
            )

    def register(self, *, host: str, pid: int, source: str) -> str | None:
        """Take a worker lease; returns the refusal (a single runner holds the campaign) or None.
        The first worker of a campaign nobody runs (re)starts it, as ``run`` does (a cancelled
        campaign stays cancelled); a worker joining live ones leaves its state alone."""
        db = self.db
        with db.transaction():
            db.lock(f"campaign {self.campaign}")
            now = float(db.execute(f"SELECT {db.now_sql}").fetchone()[0])
            row = self.store.campaign(self.campaign)
            if row is not None and row.runner_pid is not None and row.heartbeat_at is not None:
                age = now - row.heartbeat_at
                if age <= LEASE_TTL_S:
                    return (
                        f"campaign is run by pid {row.runner_pid} on host {row.runner_host or '?'} "
                        f"(heartbeat {age:.1f} s ago): a single runner excludes workers"
                    )
            live = db.execute(
                "SELECT COUNT(*) FROM workers WHERE campaign = ? AND expires_at > ?", (self.campaign, now)
            ).fetchone()[0]
            if row is None:
                db.execute(
                    "INSERT INTO campaigns (name, state, source, started_at, updated_at) VALUES (?,?,?,?,?)",
                    (self.campaign, "running", source, now, now),
                )
            elif live == 0 and row.state != "cancelled":
                db.execute(
                    "UPDATE campaigns SET state = 'running', source = ?, updated_at = ? WHERE name = ?",
                    (source, now, self.campaign),
                )
            db.execute(
                "INSERT INTO workers (id, campaign, host, pid, started_at, expires_at) VALUES (?,?,?,?,?,?)",
                (self.worker, self.campaign, host, pid, now, now + self.ttl_s),
            )
        db.name_session(session_tag(self.worker))
        return None

    def heartbeat(self) -> str:
        """Renew the lease; return the state the operator asked for. :class:`LeaseLost` when it
        expired (another worker may have taken the cards over: stop at once)."""
        db = self.db
        with db.transaction():
            cursor = db.execute(
                f"UPDATE workers SET expires_at = {db.now_sql} + ? "
                f"WHERE id = ? AND expires_at > {db.now_sql}",
                (self.ttl_s, self.worker),
            )
            if cursor.rowcount != 1:
                raise self._lost("its lease expired")
            row = db.execute("SELECT state FROM campaigns WHERE name = ?", (self.campaign,)).fetchone()
        return str(row[0]) if row else "running"

    def reap(self) -> int:
        """Free the claims and bind slots of workers whose lease expired; returns how many."""
        db = self.db
        # A worker stopped inside a transaction (SIGSTOP, a stall, a network partition) still holds
        # its lease row's lock, which the SKIP LOCKED below would skip for ever: its database
        # session is ended first (its transaction rolls back), so the next reap finds the row free.
        for (expired,) in db.execute(
            f"SELECT id FROM workers WHERE campaign = ? AND expires_at <= {db.now_sql}", (self.campaign,)
        ).fetchall():
            db.end_sessions(session_tag(str(expired)))
        with db.transaction():
            dead = [
                str(r[0])
                for r in db.execute(
                    "SELECT id FROM workers "
                    f"WHERE campaign = ? AND expires_at <= {db.now_sql} {db.skip_locked}",
                    (self.campaign,),
                )
            ]
            if not dead:
                return 0
            member, arg = db.member("worker", dead)
            db.execute(
                f"UPDATE campaign_cards SET worker = NULL WHERE campaign = ? AND {member}",
                (self.campaign, arg),
            )
            db.execute(
                f"UPDATE bind_slots SET worker = NULL WHERE campaign = ? AND {member}", (self.campaign, arg)
            )
            member, arg = db.member("id", dead)
            db.execute(f"DELETE FROM workers WHERE {member}", (arg,))
        return len(dead)

    def leave(self, finished: Sequence[str]) -> None:
        """Mark ``finished`` cards done, free the rest of the claims and the bind slots, drop the
        lease; the last worker out of a campaign with no card left open finishes it."""
        db = self.db
        with db.transaction():
            db.lock(f"campaign {self.campaign}")
            self._mark_done(finished)
            db.execute(
                "UPDATE campaign_cards SET worker = NULL WHERE campaign = ? AND worker = ?",
                (self.campaign, self.worker),
            )
            db.execute(
                "UPDATE bind_slots SET worker = NULL WHERE campaign = ? AND worker = ?",
                (self.campaign, self.worker),
            )
            db.execute("DELETE FROM workers WHERE id = ?", (self.worker,))
            open_cards = db.execute(
                "SELECT COUNT(*) FROM campaign_cards WHERE campaign = ? AND done = 0", (self.campaign,)
            ).fetchone()[0]
            live = db.execute(
                f"SELECT COUNT(*) FROM workers WHERE campaign = ? AND expires_at > {db.now_sql}",
                (self.campaign,),
            ).fetchone()[0]
            if open_cards == 0 and live == 0:
                db.execute(
                    f"UPDATE campaigns SET state = 'finished', updated_at = {db.now_sql} "
                    "WHERE name = ? AND state = 'running'",
                    (self.campaign,),
                )
                # What no worker will read any more (late copies for ended cards, or MSISDNs outside
                # the campaign): kept in the history as unclaimed, out of the inbox.
                db.execute(
                    "INSERT INTO history (at, campaign, iccid, direction, kind, cntr, status, detail) "
                    "SELECT at, campaign, NULL, 'mo', 'inbox', NULL, 'unclaimed', msisdn FROM inbox "
                    "WHERE campaign = ? ORDER BY id",
                    (self.campaign,),
                )
                db.execute("DELETE FROM inbox WHERE campaign = ?", (self.campaign,))

    # ------------------------------------------------------------------ bind slots and cards

    def take_bind_slots(self, total: int, want: int) -> list[int]:
        """Hold up to ``want`` of the campaign's ``total`` bind slots (those held already count):
        the campaign's binds in all never exceed ``[pacing] binds``, whatever the workers."""
        db = self.db
        with db.transaction():
            self._check_live()
            db.executemany(
                "INSERT INTO bind_slots (campaign, slot) VALUES (?,?) ON CONFLICT DO NOTHING",
                [(self.campaign, slot) for slot in range(total)],
            )
            held = [
                int(r[0])
                for r in db.execute(
                    "SELECT slot FROM bind_slots WHERE campaign = ? AND worker = ?",
                    (self.campaign, self.worker),
                )
            ]
            need = want - len(held)
            if need > 0:
                free = [
                    int(r[0])
                    for r in db.execute(
                        "SELECT slot FROM bind_slots WHERE campaign = ? AND worker IS NULL AND slot < ? "
                        f"ORDER BY slot LIMIT ? {db.skip_locked}",
                        (self.campaign, total, need),
                    )
                ]
                if free:
                    member, arg = db.member("slot", free)
                    db.execute(
                        f"UPDATE bind_slots SET worker = ? WHERE campaign = ? AND {member}",
                        (self.worker, self.campaign, arg),
                    )
                held += free
        return sorted(held)

    def claim(self, limit: int) -> list[str]:
        """Claim up to ``limit`` unclaimed open cards, in the campaign's order."""
        db = self.db
        with db.transaction():
            self._check_live()
            iccids = [
                str(r[0])
                for r in db.execute(
                    "SELECT iccid FROM campaign_cards WHERE campaign = ? AND done = 0 AND worker IS NULL "
                    f"ORDER BY seq LIMIT ? {db.skip_locked}",
                    (self.campaign, limit),
                )
            ]
            if iccids:
                member, arg = db.member("iccid", iccids)
                db.execute(
                    f"UPDATE campaign_cards SET worker = ? WHERE campaign = ? AND {member}",
                    (self.worker, self.campaign, arg),
                )
        return iccids

    def finish_cards(self, iccids: Sequence[str]) -> None:
        """Cards whose every job ended, durably: done, never claimed again."""
        if iccids:
            with self.db.transaction():
                self._mark_done(iccids)

    def others_open(self) -> int:
        """Open cards of the campaign this worker does not hold (unclaimed, or another worker's)."""
        return int(
            self.db.execute(
                "SELECT COUNT(*) FROM campaign_cards WHERE campaign = ? AND done = 0 "
                "AND (worker IS NULL OR worker <> ?)",
                (self.campaign, self.worker),
            ).fetchone()[0]
        )

    # ------------------------------------------------------------------ the inbox

    def take_inbox(self, limit: int = 512) -> list[InboxItem]:
        """deliver_sm other workers received for this worker's cards, oldest first (deleted by
        :meth:`delete_inbox` once what they settled is durable)."""
        return [
            InboxItem(int(r[0]), str(r[1]), int(r[2]), bytes(r[3]), r[4], r[5])
            for r in self.db.execute(
                "SELECT i.id, i.msisdn, i.esm_class, i.user_data, i.receipted_message_id, i.message_state "
                "FROM inbox i JOIN cards c ON c.msisdn = i.msisdn "
                "JOIN campaign_cards cc ON cc.campaign = i.campaign AND cc.iccid = c.iccid "
                "WHERE i.campaign = ? AND cc.worker = ? ORDER BY i.id LIMIT ?",
                (self.campaign, self.worker, limit),
            )
        ]

    def delete_inbox(self, ids: Sequence[int]) -> None:
        if ids:
            member, arg = self.db.member("id", list(ids))
            with self.db.transaction():
                self.db.execute(f"DELETE FROM inbox WHERE {member}", (arg,))

    # ------------------------------------------------------------------ the fence

    def fence(self, commit: Commit) -> None:
        """Inside the Commit's transaction: the lease is live and every card it writes is claimed."""
        self._check_live(share=True)
        iccids = {r.iccid for r in commit.reservations} | {record.key[0] for record in commit.jobs}
        iccids |= {i for i, _, _ in commit.counters} | {i for i, _, _ in commit.mo_counters}
        if not iccids:
            return
        member, arg = self.db.member("iccid", sorted(iccids))
        held = self.db.execute(
            f"SELECT COUNT(*) FROM campaign_cards WHERE campaign = ? AND worker = ? AND {member}",
            (self.campaign, self.worker, arg),
        ).fetchone()[0]
        if held != len(iccids):
            raise self._lost(f"{len(iccids) - held} of the cards it writes are no longer its own")

    def _check_live(self, *, share: bool = False) -> None:
        db = self.db
        lock = db.for_share if share else ""
        row = db.execute(
            f"SELECT 1 FROM workers WHERE id = ? AND expires_at > {db.now_sql} {lock}", (self.worker,)
        ).fetchone()
        if row is None:
            raise self._lost("its lease expired")

    def _mark_done(self, iccids: Sequence[str]) -> None:
        if iccids:
            member, arg = self.db.member("iccid", list(iccids))
            self.db.execute(
                f"UPDATE campaign_cards SET done = 1 WHERE campaign = ? AND worker = ? AND {member}",
                (self.campaign, self.worker, arg),
            )

    def _lost(self, why: str) -> Exception:
        from ota_server.card_store import LeaseLost

        return LeaseLost(f"campaign {self.campaign}: worker {self.worker} lost its cards ({why}); stopping")

"""The public card API: the one module ``handset`` may import (house-style §1).

A :class:`SimCard` is an emulated UICC/SIM behind one method, :meth:`SimCard.exchange`:
C-APDU bytes in (T=0 form ``CLA INS P1 P2 P3 [data]``), R-APDU bytes out (data + SW1
SW2), for ISO/IEC 7816-4 / TS 102 221 file commands, GET RESPONSE, and the CAT
commands of TS 102 221 §10.1.2 (TERMINAL PROFILE, ENVELOPE, FETCH, TERMINAL RESPONSE).
OTA command packets arrive in SMS-PP DOWNLOAD ENVELOPEs (TS 31.111 §7.1.1), are
verified per TS 102 225 and answered with a PoR (protocols.md §7).

Glossary: ATR answer to reset, PoR proof of receipt, TAR toolkit application
reference, CNTR replay counter, KVN key version number.

Build cards with :func:`load_card` (a profile file, state in a JSON file beside it) or
:func:`card_from_fleet` (a fleet template + ``ota_protocols.fleet`` identity and keys,
state in memory). :meth:`SimCard.report` is what the lab compares against the server to
prove exactly-once application. :meth:`SimCard.stop_after_actions` is the card-tearing
hook: see its docstring.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from typing import Any

from ota_protocols.errors import ConnectionLost
from ota_protocols.fleet import DerivedCard, FleetSpec, derive_card
from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm
from sim_emulator.card_state import CardState, state_from_json, state_to_json
from sim_emulator.card_state_store import CardStateStore, FileCardStateStore, MemoryCardStateStore
from sim_emulator.card_template import CardTemplate
from sim_emulator.config import default_state_path, load_card_profile, load_card_template
from sim_emulator.profile import CardIdentity, KeysetProfile
from sim_emulator.uicc import CardTorn, Uicc

__all__ = [
    "CardPoweredOff",
    "CardTemplate",
    "SimCard",
    "card_from_fleet",
    "load_card",
    "load_card_template",
    "snapshot_application",
    "snapshot_dictionary",
]

log = logging.getLogger(__name__)


# json.dumps(..., separators=(",", ":"), sort_keys=True) without building its encoder per snapshot
# (an encoder keeps no state between calls).
_SNAPSHOT_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


class CardPoweredOff(ConnectionLost):
    """The card lost power (the tearing hook fired) and answers nothing until :meth:`SimCard.reset`."""


class SimCard:
    """One emulated card. Not thread-safe; cheap when idle (shares its template)."""

    __slots__ = ("_powered", "_store", "_uicc")

    def __init__(self, template: CardTemplate, identity: CardIdentity, store: CardStateStore) -> None:
        stored = store.load()
        if stored is None:
            state = template.initial_state(identity.index)
        else:
            state = template.complete_state(stored, identity.index)
        self._store = store
        self._uicc = Uicc(template, identity, state, store.save)
        self._powered = True

    @property
    def iccid(self) -> str:
        return self._uicc.identity.iccid

    @property
    def imsi(self) -> str:
        return self._uicc.identity.imsi

    @property
    def msisdn(self) -> str:
        return self._uicc.identity.msisdn

    def __repr__(self) -> str:
        return f"SimCard(iccid={self.iccid}, msisdn={self.msisdn})"

    def exchange(self, c_apdu: bytes) -> bytes:
        """One APDU. Bad APDUs get a status word, never an exception. Raises
        :class:`CardPoweredOff` only when the tearing hook fired (during this APDU or
        before, until :meth:`reset`)."""
        if not self._powered:
            raise CardPoweredOff(f"card {self.iccid} is powered off; reset() it")
        try:
            r_apdu = self._uicc.exchange(c_apdu)
        except CardTorn as exc:
            self._powered = False
            # What survives a power cut is what was saved: reload it, as a reboot would.
            stored = self._store.load()
            if stored is not None:
                self._uicc.state = stored
            log.debug("x %s card torn", self.iccid)
            raise CardPoweredOff(f"card {self.iccid}: {exc}") from None
        if log.isEnabledFor(logging.DEBUG):
            log.debug("<> %s c=%s r=%s", self.iccid, bytes(c_apdu).hex(), r_apdu.hex())
        return r_apdu

    def reset(self) -> bytes:
        """Power on / cold reset: returns the ATR; volatile state (current DF, GET RESPONSE
        data, pending proactive commands, partial concatenations) is dropped, persistent
        state (files, counters, action counters) kept."""
        self._powered = True
        return self._uicc.reset()

    def stop_after_actions(self, k: int | None) -> None:
        """Card tearing hook, one-shot, for the next accepted command packet: after its CNTR
        and ``k`` counted actions have been saved, the card loses power (``k = 0``: right
        after the CNTR). The saved actions stay done with their increments, the rest of the
        script never runs, no PoR is sent; the :meth:`exchange` in progress raises
        :class:`CardPoweredOff`. If the script has fewer than ``k`` actions it completes
        normally. ``None`` disarms."""
        self._uicc.tear_after_actions = k

    def snapshot(self, zdict: bytes = b"") -> bytes:
        """The persistent state (what the state store holds: files, counters, action counters,
        journals) as compact deterministic bytes: the card-state JSON of the file store (sorted keys)
        deflated against ``zdict`` (:func:`snapshot_dictionary`; the same one restores it). Volatile
        state is not in it: :func:`card_from_fleet` with ``state=`` is a card after a power cycle.
        Holds the card's counters and journals but never its keys (those come from the identity)."""
        state = self._store.load() or self._uicc.state
        text = _SNAPSHOT_JSON.encode(state_to_json(state)).encode()
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict) if zdict else None
        if c is None:
            c = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
        return c.compress(text) + c.flush()

    def report(self) -> dict[str, Any]:
        """JSON-able summary of the persistent state (no keys)."""
        state = self._uicc.state
        applications = []
        for app in self._uicc.template.applications:
            s = state.applications[app.tar]
            entry: dict[str, Any] = {
                "tar": app.tar.hex(),
                "kind": app.profile.kind.value,
                "action_counter": s.action_counter,
                "journal": [{"counter": j.counter, "apdu": j.apdu.hex()} for j in s.journal],
            }
            if s.balance is not None:
                entry["balance"] = s.balance
                entry["parameters"] = {f"{k:02x}": v.hex() for k, v in sorted(s.parameters.items())}
                # Card-originated messages (docs/action-counter.md "Deferred reports").
                entry["mo_cntr"] = s.mo_cntr
                entry["request_sequence"] = s.request_sequence
                entry["replies"] = [{"sequence": r.sequence, "accepted": r.accepted} for r in s.replies]
            if s.load_files or s.instances:
                entry["load_files"] = {
                    aid.hex(): {"blocks": lf.blocks, "complete": lf.complete}
                    for aid, lf in sorted(s.load_files.items())
                }
                entry["instances"] = sorted(aid.hex() for aid in s.instances)
            applications.append(entry)
        return {
            "iccid": self.iccid,
            "imsi": self.imsi,
            "msisdn": self.msisdn,
            "applications": applications,
            "counters": [
                {"kvn": kvn, "tar": tar.hex(), "cntr": cntr}
                for (kvn, tar), cntr in sorted(state.counters.items())
            ],
        }


def snapshot_dictionary(template: CardTemplate, index: int) -> bytes:
    """A deflate dictionary for :meth:`SimCard.snapshot` of a fleet's cards: the template's initial
    state of card ``index`` as card-state JSON (what every snapshot of that template shares: TARs,
    file contents, initial values). Compute it once per template and pass it to both sides."""
    sample = json.dumps(state_to_json(template.initial_state(index)), sort_keys=True)
    return (sample * 2).encode()[-32768:]


def _inflate(blob: bytes, zdict: bytes) -> dict[str, Any]:
    d = zlib.decompressobj(-15, zdict) if zdict else zlib.decompressobj(-15)
    data: dict[str, Any] = json.loads(d.decompress(blob) + d.flush())
    return data


def _restore(blob: bytes, zdict: bytes, what: str) -> CardState:
    return state_from_json(_inflate(blob, zdict), what)


def snapshot_application(
    template: CardTemplate, index: int, state: bytes | None, tar_hex: str, *, zdict: bytes = b""
) -> dict[str, Any] | None:
    """The application entry of :meth:`SimCard.report` for ``tar_hex`` (``tar``, ``action_counter``,
    ``journal``) read from a snapshot (None: the template's initial state) without building the card;
    None when the card has no such application."""
    data = state_to_json(template.initial_state(index)) if state is None else _inflate(state, zdict)
    app = data["applications"].get(tar_hex)
    if app is None:
        return None
    journal = [{"counter": c, "apdu": h} for c, h in app["journal"]]
    return {"tar": tar_hex, "action_counter": app["action_counter"], "journal": journal}


# Algorithm names -> members: what CipherAlgorithm(name) / IntegrityAlgorithm(name) answer (constant
# tables, read at every wake instead of the enum call); an unknown name still gets the enum's ValueError.
_CIPHERS = {a.value: a for a in CipherAlgorithm}
_INTEGRITY = {a.value: a for a in IntegrityAlgorithm}


def card_from_fleet(
    spec: FleetSpec,
    index: int,
    template: CardTemplate,
    *,
    state: bytes | None = None,
    zdict: bytes = b"",
    derived: DerivedCard | None = None,
) -> SimCard:
    """Card ``index`` of a fleet: identity and TEST keys from ``derive_card``; state in memory,
    starting from ``state`` (a :meth:`SimCard.snapshot` made with the same ``zdict``; a power
    cycle: volatile state is gone) or from the template. ``derived``: ``derive_card(spec, index)``
    when the caller already has it (the derivation is a pure function; it is not checked)."""
    if derived is None:
        derived = derive_card(spec, index)
    keysets = tuple(
        KeysetProfile(
            kvn=k.kvn,
            kic_algorithm=_CIPHERS.get(k.kic_algorithm) or CipherAlgorithm(k.kic_algorithm),
            kid_algorithm=_INTEGRITY.get(k.kid_algorithm) or IntegrityAlgorithm(k.kid_algorithm),
            kic=k.kic,
            kid=k.kid,
            kik=k.kik,
        )
        for k in derived.keysets
    )
    identity = CardIdentity(
        iccid=derived.iccid, imsi=derived.imsi, msisdn=derived.msisdn, keysets=keysets, index=index
    )
    stored = None if state is None else _restore(state, zdict, f"snapshot of card {index}")
    return SimCard(template, identity, MemoryCardStateStore(stored))


def load_card(
    profile_path: str | os.PathLike[str], state_path: str | os.PathLike[str] | None = None
) -> SimCard:
    """A card from a profile TOML; its state in ``state_path`` (default ``<profile>.state.json``)."""
    template, identity = load_card_profile(profile_path)
    store = FileCardStateStore(state_path if state_path is not None else default_state_path(profile_path))
    return SimCard(template, identity, store)

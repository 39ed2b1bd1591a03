"""Card inventory CSV: ``ota-server cards import|export`` (docs/campaigns.md §6).

Clauses: ITU-T E.118 (ICCID, up to 20 digits, the last one the Luhn check digit), ITU-T E.212
(IMSI, up to 15 digits), ITU-T E.164 (MSISDN, up to 15 digits), TS 102 225 §5.1.2-§5.1.3 (key
sets: KVN 1..15, KIc / KID algorithms and key lengths).

Glossary: KVN key version number (the KIc/KID key index), KIc ciphering key, KID checksum key.

Format: one row per key set; a card with two key sets has two rows whose ``iccid``, ``imsi``,
``msisdn`` and ``tags`` agree::

    iccid,imsi,msisdn,kvn,kic_algorithm,kic,kid_algorithm,kid,tags
    8988211000000000006,001010000000000,491700000000,1,aes,b557…,aes-cmac,bad6…,pilot;berlin

``tags`` are separated by ``;``. Every problem is a :class:`ConfigError` reading
``FILE:LINE:COLUMN: problem``; :func:`parse_inventory` checks the whole file before the store
imports anything, and the store imports it in one transaction (all or nothing).

:func:`fleet_cards` is the inventory of a derived test fleet (``[fleet]`` of a handset config).

Export writes the same header; key columns are ``*`` unless ``with_keys`` (the key hex never
appears in logs or reports).  Importing such a masked export says so and points to ``--with-keys``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ota_protocols.errors import ConfigError
from ota_protocols.fleet import FleetSpec, derive_card, luhn_digit
from ota_protocols.hex_text import parse_hex
from ota_protocols.secured_packet.security_parameters import KEY_LENGTHS, CipherAlgorithm, IntegrityAlgorithm
from ota_server.config import read_text_file
from ota_server.model import Card, Keyset, keysets_of

COLUMNS = ("iccid", "imsi", "msisdn", "kvn", "kic_algorithm", "kic", "kid_algorithm", "kid", "tags")
MASK = "*"


def _digits(value: str, low: int, high: int, what: str) -> str | None:
    if not value.isdigit() or not low <= len(value) <= high:
        return f"expected {low}..{high} digits ({what}), got {value!r}"
    return None


def _iccid_problem(iccid: str) -> str | None:
    """ITU-T E.118: the last digit of an ICCID is the Luhn check digit of the digits before it."""
    expected = luhn_digit(iccid[:-1])
    if iccid[-1] != expected:
        return (
            f"check digit {iccid[-1]} is wrong: the Luhn digit of the first {len(iccid) - 1} digits "
            f"is {expected} (ITU-T E.118)"
        )
    return None


def _key(value: str, algorithm: CipherAlgorithm | IntegrityAlgorithm) -> tuple[bytes | None, str | None]:
    if value == MASK:
        return None, (
            f"the key is masked ({MASK!r}): 'ota-server cards export' masks keys unless given "
            "--with-keys; export again with --with-keys to re-import them"
        )
    try:
        raw = parse_hex(value)
    except ValueError as exc:
        return None, f"not hex: {exc}"
    lengths = KEY_LENGTHS.get(algorithm)
    if lengths is not None and len(raw) not in lengths:
        wanted = " or ".join(str(n) for n in lengths)
        return None, f"{algorithm.value} needs {wanted} octets, got {len(raw)}"
    if lengths is None and not raw:
        return None, "empty"
    return raw, None


def parse_inventory(path: Path) -> list[tuple[Card, list[Keyset]]]:
    """Read and check the whole file; the first problem raises ``FILE:LINE:COLUMN: problem``."""
    return parse_inventory_text(read_text_file(path), str(path))


def parse_inventory_text(text: str, source: str) -> list[tuple[Card, list[Keyset]]]:
    """Check a whole inventory CSV (``cards import``, ``POST /api/cards``); errors name
    ``SOURCE:LINE:COLUMN``."""

    def fail(line: int, column: str | None, problem: str) -> ConfigError:
        where = f"{source}:{line}" + (f":{column}" if column else "")
        return ConfigError("", problem, source=where)

    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    cards: dict[str, tuple[Card, list[Keyset], int]] = {}
    msisdns: dict[str, tuple[str, int]] = {}
    for cells in reader:
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        if header is None:
            header = [c.strip().lower() for c in cells]
            missing = [c for c in COLUMNS if c not in header]
            unknown = [c for c in header if c not in COLUMNS]
            if unknown:
                raise fail(line, unknown[0], f"unknown column (expected {','.join(COLUMNS)})")
            if missing:
                raise fail(line, missing[0], f"column missing (expected {','.join(COLUMNS)})")
            continue
        if len(cells) != len(header):
            raise fail(line, None, f"expected {len(header)} columns, got {len(cells)}")
        row = {c: v.strip() for c, v in zip(header, cells, strict=True)}
        for column, low, high, what in (
            ("iccid", 10, 20, "ITU-T E.118"),
            ("imsi", 6, 15, "ITU-T E.212"),
            ("msisdn", 1, 15, "ITU-T E.164"),
        ):
            problem = _digits(row[column], low, high, what)
            if problem:
                raise fail(line, column, problem)
        problem = _iccid_problem(row["iccid"])
        if problem:
            raise fail(line, "iccid", problem)
        if not row["kvn"].isdigit() or not 1 <= int(row["kvn"]) <= 15:
            raise fail(line, "kvn", f"expected a key version 1..15 (TS 102 225 §5.1.2), got {row['kvn']!r}")
        try:
            kic_algorithm = CipherAlgorithm(row["kic_algorithm"].lower())
        except ValueError:
            names = ", ".join(a.value for a in CipherAlgorithm)
            raise fail(line, "kic_algorithm", f"unknown {row['kic_algorithm']!r} ({names})") from None
        try:
            kid_algorithm = IntegrityAlgorithm(row["kid_algorithm"].lower())
        except ValueError:
            names = ", ".join(a.value for a in IntegrityAlgorithm)
            raise fail(line, "kid_algorithm", f"unknown {row['kid_algorithm']!r} ({names})") from None
        kic, problem = _key(row["kic"], kic_algorithm)
        if kic is None:
            raise fail(line, "kic", problem or "bad key")  # the value itself is never repeated
        kid, problem = _key(row["kid"], kid_algorithm)
        if kid is None:
            raise fail(line, "kid", problem or "bad key")
        tags = tuple(t.strip() for t in row["tags"].split(";") if t.strip())
        keyset = Keyset(
            kvn=int(row["kvn"]), kic_algorithm=kic_algorithm, kid_algorithm=kid_algorithm, kic=kic, kid=kid
        )
        iccid = row["iccid"]
        card = Card(iccid=iccid, imsi=row["imsi"], msisdn=row["msisdn"], tags=tags)
        if iccid in cards:
            known, keysets, first = cards[iccid]
            for column in ("imsi", "msisdn", "tags"):
                if getattr(known, column) != getattr(card, column):
                    raise fail(line, column, f"differs from line {first} of the same ICCID")
            if any(k.kvn == keyset.kvn for k in keysets):
                raise fail(line, "kvn", f"key set {keyset.kvn} of {iccid} already on an earlier line")
            keysets.append(keyset)
            continue
        other = msisdns.get(card.msisdn)
        if other is not None:
            raise fail(line, "msisdn", f"{card.msisdn} already belongs to {other[0]} (line {other[1]})")
        msisdns[card.msisdn] = (iccid, line)
        cards[iccid] = (card, [keyset], line)
    if header is None:
        raise ConfigError("", f"empty file: expected the header {','.join(COLUMNS)}", source=source)
    return [(card, keysets) for card, keysets, _ in cards.values()]


def import_inventory(
    store: Any, cards: Sequence[tuple[Card, Sequence[Keyset]]], source: str
) -> tuple[int, int]:
    """Add or update ``cards`` in ``store`` in one transaction (all or nothing), after checking that
    no MSISDN belongs to another card of the store. Returns (cards added, cards updated)."""
    owners = store.msisdn_owners()
    for card, _ in cards:
        owner = owners.get(card.msisdn)
        if owner is not None and owner != card.iccid:
            raise ConfigError("", f"MSISDN {card.msisdn} belongs to card {owner} in {store.path}",
                              source=f"{source}:msisdn")  # fmt: skip
    added, updated = store.upsert_inventory(cards)
    return int(added), int(updated)


def export_rows(cards: Iterable[Card], keysets: dict[str, dict[int, Keyset]], *, with_keys: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for card in cards:
        for kvn, ks in sorted(keysets.get(card.iccid, {}).items()):
            writer.writerow(
                (
                    card.iccid,
                    card.imsi,
                    card.msisdn,
                    kvn,
                    ks.kic_algorithm.value,
                    ks.kic.hex() if with_keys else MASK,
                    ks.kid_algorithm.value,
                    ks.kid.hex() if with_keys else MASK,
                    ";".join(card.tags),
                )
            )
    return out.getvalue()


def fleet_cards(fleet: FleetSpec) -> list[tuple[Card, list[Keyset]]]:
    """The cards of a derived fleet with their key sets, as ``campaign run`` imports them (no tags:
    those come from ``cards import``)."""
    out: list[tuple[Card, list[Keyset]]] = []
    for i in fleet.indices:
        derived = derive_card(fleet, i)
        keysets = keysets_of(derived)
        out.append((Card(iccid=derived.iccid, imsi=derived.imsi, msisdn=derived.msisdn, index=i), keysets))
    return out

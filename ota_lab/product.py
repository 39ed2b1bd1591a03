"""The campaign and the cards a seed's ``[product]`` draw stands for (docs/labs.md ``[product]``).

Clauses: TS 102 225 §5.1.1 (SPI: integrity, ciphering, counter mode, PoR request and path), §5.1.2-
§5.1.3 (KIc/KID: key set b8..b5, algorithm b4..b1), TS 31.115 §4.1 (PoR by SMS-SUBMIT), TS 102 226
§8 (RAM: INSTALL, LOAD), WO 00/07153 claims 8-9 (transaction requests, information messages).

PURE: the seed's draw comes in as a dict (:attr:`ota_lab.draw.FaultMix.product`), the fleet as its
:class:`~ota_protocols.fleet.FleetSpec`, per-card values from a ``random.Random`` the caller seeds;
what goes out are TOML-ready tables and CSV text. :mod:`ota_lab.seed_files` writes them.

* :func:`security` - the ``[steps.security]`` table: SPI from the draw, KIc/KID naming the drawn key
  set with its algorithms (a CRC-32 KID for an RC), PoR always and by the drawn path;
* :func:`campaign_tables` - ``[targets]`` and ``[[steps]]`` of the drawn script, and the CSV files
  they name;
* :func:`card_template` - the fleet's card template with every application's MSL set to the drawn
  SPI1 (the cards accept the drawn security) and the drawn power-up information message.

Glossary: SPI security parameter indicator; KIc/KID key identifiers; KVN key version number (key
set); MSL minimum security level; TAR toolkit application reference; RC/CC redundancy check /
cryptographic checksum; PoR proof of receipt; RFM/RAM remote file / applet management; EF
elementary file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ota_lab.config import CounterChoice, Integrity, PorPath, Script
from ota_protocols.errors import EncodeError
from ota_protocols.fleet import FleetSpec, KeysetTemplate, derive_card
from ota_protocols.secured_packet.security_parameters import (
    CipherAlgorithm,
    CounterMode,
    IntegrityAlgorithm,
    IntegrityMode,
    PorRequest,
    Spi,
    kic_octet,
    kid_octet,
)

if TYPE_CHECKING:
    import random

__all__ = [
    "RFM_ACTIONS",
    "campaign_tables",
    "card_template",
    "key_identifiers",
    "security",
    "spi_of",
]

TAR_RFM = "b00010"  # SIM file system RFM (configs/cards/fleet-template.toml)
TAR_RAM = "000000"  # issuer security domain
TAR_PURSE = "bfff01"  # e-purse

_COUNTER_MODES = {CounterChoice.HIGHER: CounterMode.HIGHER}


def _spn(name: str) -> str:
    """EF.SPN, 17 octets: display condition 01, the name in the GSM default alphabet's ASCII subset,
    padded with FF (TS 51.011 §10.3.11)."""
    return "01" + (name.encode("ascii") + b"\xff" * 16)[:16].hex()


# RFM actions in the order a seed takes its first 1..4 (docs/labs.md): one action fits a single SMS;
# four make a concatenated command packet. EF.CBMI is absent on cards with index % 10 == 7, so from
# three actions on those cards end "partial" (6A82).
RFM_ACTIONS: tuple[dict[str, Any], ...] = (
    {"type": "update_binary", "path": "3F00/7F20/6F46", "offset": 0, "data": _spn("OTA Lab Network")},
    {  # EF.ADN record 1, 30 octets: alpha "Service" (16), BCD +4917000000 (14, TS 51.011 §10.5.1)
        "type": "update_record",
        "path": "3F00/7F10/6F3A",
        "record": 1,
        "data": ("Service".encode("ascii") + b"\xff" * 9).hex() + "0691" + "9471000000" + "ff" * 7,
    },
    {"type": "update_binary", "path": "3F00/7F20/6F50", "offset": 0, "data": "0032" + "ff" * 8},
    {"type": "update_binary", "path": "3F00/7F20/6F31", "offset": 0, "data": "02"},
)

# RAM: a 203-octet load file (tag C4, GP §11.6.2.3) in 64-octet blocks: INSTALL [for load], 4 LOADs,
# INSTALL [for install] = 6 counted commands, always a concatenated command packet.
_LOAD_BODY = bytes((7 * i + 1) & 0xFF for i in range(200))
_RAM_INSTALL: dict[str, Any] = {
    "type": "ram_install",
    "load_file_aid": "a0000000871002",
    "module_aid": "a000000087100201",
    "application_aid": "a000000087100201",
    "block_size": 64,
    "load_file": "c481" + f"{len(_LOAD_BODY):02x}" + _LOAD_BODY.hex(),
}
_PURSE_LIMIT: dict[str, Any] = {"type": "set_parameter", "parameter": 1, "value": "000186a0"}  # 100000
_AMOUNT_STEP, _AMOUNT_STEPS = 50, 40  # per-card reload amounts 50..2000


def spi_of(product: dict[str, Any]) -> Spi:
    """SPI of the draw: the command's integrity and ciphering, the PoR always, with the same integrity
    (the KID names one algorithm for both, TS 102 225 §5.1.3) and ciphering, by the drawn path."""
    integrity = IntegrityMode.CC if product["integrity"] == Integrity.CC else IntegrityMode.RC
    return Spi.build(
        integrity=integrity,
        ciphering=bool(product["cipher"]),
        counter=_COUNTER_MODES[CounterChoice(product["counter"])],
        por=PorRequest.ALWAYS,
        por_integrity=integrity,
        por_ciphered=bool(product["cipher"]),
        por_via_sms_submit=product["por_path"] == PorPath.SMS_SUBMIT,
    )


def key_identifiers(product: dict[str, Any], keysets: Sequence[KeysetTemplate]) -> tuple[int, int] | None:
    """(KIc, KID) naming the drawn key set: its own algorithms' explicit codings (implicit, b2b1 = 00,
    for an algorithm without one), a CRC-32 KID for an RC. None: the fleet has no such key set."""
    kvn = int(product["keyset"])
    template = next((k for k in keysets if k.kvn == kvn), None)
    if template is None:
        return None
    try:
        kic = kic_octet(kvn, CipherAlgorithm(template.kic_algorithm))
    except (ValueError, EncodeError):
        kic = kvn << 4
    checksum = (
        IntegrityAlgorithm.CRC32
        if product["integrity"] == Integrity.RC
        else IntegrityAlgorithm(template.kid_algorithm)
    )
    try:
        kid = kid_octet(kvn, checksum)
    except EncodeError:
        kid = kvn << 4
    return kic, kid


def security(product: dict[str, Any], kic: int, kid: int, tar: str) -> dict[str, Any]:
    """One ``[steps.security]`` table of the draw."""
    return {
        "spi": spi_of(product).to_bytes().hex(),
        "kic": f"{kic:02x}",
        "kid": f"{kid:02x}",
        "tar": tar,
        "por_mode": "sms_submit" if product["por_path"] == PorPath.SMS_SUBMIT else "deliver_report",
    }


def _amount(rng: random.Random) -> int:
    return _AMOUNT_STEP * rng.randint(1, _AMOUNT_STEPS)


def campaign_tables(
    product: dict[str, Any], fleet: FleetSpec, kic: int, kid: int, rng: random.Random
) -> tuple[dict[str, Any], dict[str, str]]:
    """``[targets]`` and ``[[steps]]`` of the drawn script, and the CSV files (name -> text) they name,
    relative to the campaign file. ``rng`` draws the per-card values, in fleet order."""
    script = Script(product["script"])
    fleet = replace(fleet, keysets=())  # identities only: no key is derived for a CSV
    if script is Script.RFM:
        step = {
            "name": "rfm",
            "security": security(product, kic, kid, TAR_RFM),
            "actions": [dict(a) for a in RFM_ACTIONS[: int(product["rfm_actions"])]],
        }
        return {"targets": {"fleet": True}, "steps": [step]}, {}
    if script is Script.RAM:
        step = {
            "name": "install",
            "security": security(product, kic, kid, TAR_RAM),
            "actions": [_RAM_INSTALL],
        }
        return {"targets": {"fleet": True}, "steps": [step]}, {}
    purse = security(product, kic, kid, TAR_PURSE)
    cards = [derive_card(fleet, index) for index in fleet.indices]
    if script is Script.PURSE:
        rows = [f"{card.iccid},{_amount(rng)}" for card in cards]
        steps = [
            {"name": "limit", "security": purse, "actions": [_PURSE_LIMIT]},
            {
                "name": "reload",
                "run_if": "confirmed",
                "security": purse,
                "actions": [{"type": "purse_reload", "amount": "{csv.amount}"}],
            },
        ]
        tables = {"targets": {"fleet": True, "csv": "amounts.csv"}, "steps": steps}
        return tables, {"amounts.csv": "\n".join(["iccid,amount", *rows]) + "\n"}
    # Multi-step: an MSISDN range selects part of the fleet (fleet cards carry no tags: those come
    # from `ota-server cards import`), the CSV gives every card its own EF.SPN and reload amount.
    n = len(cards)
    count = max(1, min(n, round(n * float(product["target_share"]))))
    first = int(float(product["target_start"]) * (n - count))
    chosen = cards[first : first + count]
    rows = [f"{card.msisdn},{_spn(f'Lab {card.index:06d}')},{_amount(rng)}" for card in cards]
    steps = [
        {
            "name": "files",
            "security": security(product, kic, kid, TAR_RFM),
            "actions": [
                {"type": "update_binary", "path": "3F00/7F20/6F46", "offset": 0, "data": "{csv.spn}"},
                dict(RFM_ACTIONS[2]),  # EF.CBMI: "partial" on cards with index % 10 == 7
            ],
        },
        {"name": "limit", "run_if": str(product["run_if"]), "security": purse, "actions": [_PURSE_LIMIT]},
        {
            "name": "reload",
            "run_if": "confirmed",
            "security": purse,
            "actions": [{"type": "purse_reload", "amount": "{csv.amount}"}],
        },
    ]
    targets = {
        "fleet": True,
        "msisdn_ranges": [[chosen[0].msisdn, chosen[-1].msisdn]],
        "csv": "cards.csv",
    }
    return {"targets": targets, "steps": steps}, {"cards.csv": "\n".join(["msisdn,spn,amount", *rows]) + "\n"}


def card_template(template: dict[str, Any], product: dict[str, Any]) -> dict[str, Any]:
    """The fleet's card template for this seed: every application's MSL is the drawn SPI1 (so the
    cards accept an unciphered or RC-only command the draw asks for; the server's security is what
    is under test, not the issuer's profile), and ``info_message_on_power_up`` is the draw's."""
    out = dict(template)
    spi1 = spi_of(product).spi1
    apps = out.get("applications")
    if isinstance(apps, list):
        out["applications"] = [app | {"msl": f"{spi1:02x}"} if isinstance(app, dict) else app for app in apps]
    options = out.get("options")
    out["options"] = (dict(options) if isinstance(options, dict) else {}) | {
        "info_message_on_power_up": bool(product["information_at_power_up"])
    }
    return out

"""The files of one seed: the handset config and the campaign file a run loads, written from the lab
and its drawn :class:`~ota_lab.draw.FaultMix` (docs/labs.md "Lab file").

The handset file is the lab's base network with its inline ``[network.*]`` tables merged over it,
the timing of ``[timing]`` and the drawn faults in ``[radio]``; the campaign file is the base
campaign with the inline ``[campaign.*]`` tables, the deadline and retry policy of ``[timing]``, and
the seed's handset file as its ``[network]``. With ``[product]`` the drawn script replaces the base
campaign's security, actions, steps and targets (:mod:`ota_lab.product`), its CSV files and the
seed's card template are written beside them, and the network gets the drawn card reports.
Relative paths are made absolute, so the files load from any working directory. Both go through
the applications' own loaders afterwards (``handset.config.load_config``,
``ota_server.config.load_campaign``), so a lab means the same on both transports.
"""

from __future__ import annotations

import random
import tomllib
from pathlib import Path
from typing import Any

from ota_lab import product
from ota_lab.config import LabConfig
from ota_lab.draw import FaultMix
from ota_lab.toml_writer import dumps
from ota_protocols.errors import ConfigError
from ota_server.config import load_network_inventory

__all__ = ["write_configs"]


def _radio_table(base: dict[str, Any], lab: LabConfig, mix: FaultMix) -> dict[str, Any]:
    """The handset's ``[radio]``: the network's own, with the faults the lab ranges name replaced."""
    radio = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    radio["seed"] = mix.radio_seed
    shape = lab.faults
    named = lab.faults.ranges
    for d in ("mt", "mo"):
        table = radio.setdefault(d, {})

        def value(name: str, d: str = d) -> float | None:
            key = f"{d}_{name}"
            return mix.faults[key] if key in named else None

        if (v := value("loss")) is not None:
            table["loss_probability"] = v
        if (v := value("burst")) is not None:
            table.update(
                p_good_to_bad=v, p_bad_to_good=shape.burst_p_bad_to_good, loss_in_good=0.0, loss_in_bad=1.0
            )
        if (v := value("duplicate")) is not None:
            table["duplicate_probability"] = v
        if (v := value("reorder")) is not None:
            table.update(reorder_probability=v, reorder_extra_s=shape.reorder_extra_s)
        if (v := value("jitter_s")) is not None:
            table.update(jitter="uniform", jitter_s=v)
        if (v := value("late")) is not None:
            table.update(late_probability=v, late_min_s=shape.late_min_s, late_max_s=shape.late_max_s)
        if (v := value("corrupt")) is not None:
            table["corrupt_probability"] = v
    if "offline" in named:
        radio["offline"] = {
            "offline_probability": mix.faults["offline"],
            "mean_offline_s": shape.mean_offline_s,
        }
    if "busy" in named:
        radio["sim_busy_probability"] = mix.faults["busy"]
    if "tear" in named:
        radio["tear_probability"] = mix.faults["tear"]
    return radio


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; anything else (arrays of tables included) replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_toml(path: Path, lab: LabConfig, key: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(key, f"{path}: {exc}", source=lab.source) from None


def _absolute(path: str, base: Path) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else (base / p).resolve())


def write_configs(lab: LabConfig, mix: FaultMix, workdir: Path) -> tuple[Path, Path]:
    """The handset and campaign files of this seed, written into ``workdir`` (paths made absolute)."""
    handset: dict[str, Any] = {}
    if lab.handset_config is not None:
        handset = _read_toml(lab.handset_config, lab, "network.handset_config")
        base = lab.handset_config.parent
        fleet = handset.get("fleet")
        if isinstance(fleet, dict) and isinstance(fleet.get("card_template"), str):
            fleet["card_template"] = _absolute(fleet["card_template"], base)
        for card in handset.get("cards", []) if isinstance(handset.get("cards"), list) else []:
            for key in ("profile", "state"):
                if isinstance(card, dict) and isinstance(card.get(key), str):
                    card[key] = _absolute(card[key], base)
    inline = dict(lab.network)
    lab_dir = Path(lab.source).parent
    fleet_inline = inline.get("fleet")
    if isinstance(fleet_inline, dict) and isinstance(fleet_inline.get("card_template"), str):
        inline["fleet"] = fleet_inline | {"card_template": _absolute(fleet_inline["card_template"], lab_dir)}
    handset = _merge(handset, inline)
    smsc = handset.setdefault("smsc", {})
    smsc.update(host="127.0.0.1", port=0)
    t = lab.timing
    for key, value in (
        ("rp_timeout_s", t.rp_timeout_s),
        ("retry_min_s", t.retry_min_s),
        ("retry_max_s", t.retry_max_s),
        ("default_validity_s", t.validity_s),
    ):
        if value is not None:
            smsc[key] = value
    if mix.fleet_size is not None:
        handset.setdefault("fleet", {})["count"] = mix.fleet_size
    handset["radio"] = _radio_table(handset.get("radio", {}), lab, mix)
    if lab.product is not None:
        _product_network(handset, lab, mix, workdir)
    handset_path = workdir / "handset.toml"
    handset_path.write_text(dumps(handset))

    campaign: dict[str, Any] = {}
    if lab.campaign_path is not None:
        campaign = _read_toml(lab.campaign_path, lab, "campaign.path")
    campaign = _merge(campaign, lab.campaign)
    if lab.product is not None:
        _product_campaign(campaign, lab, mix, handset_path, workdir)
    section = campaign.setdefault("campaign", {})
    section["name"] = f"{lab.name}-seed-{mix.seed}"
    if t.deadline_s is not None:
        section["deadline_s"] = t.deadline_s
    campaign["network"] = {"handset_config": str(handset_path)}
    retry = campaign.setdefault("retry", {})
    for key, value in (
        ("por_timeout_s", t.por_timeout_s),
        ("max_attempts", t.max_attempts),
        ("backoff_s", t.backoff_s),
        ("max_backoff_s", t.max_backoff_s),
    ):
        if value is not None:
            retry[key] = value
    smpp = campaign.setdefault("smsc", {})
    if "system_id" not in smpp:
        esmes = handset.get("smsc", {}).get("esmes", [])
        if esmes and isinstance(esmes[0], dict):
            smpp["system_id"] = esmes[0].get("system_id", "")
            smpp["password"] = esmes[0].get("password", "")
    campaign_path = workdir / "campaign.toml"
    campaign_path.write_text(dumps(campaign))
    return handset_path, campaign_path


# --------------------------------------------------------------------------- [product]


def _product_network(handset: dict[str, Any], lab: LabConfig, mix: FaultMix, workdir: Path) -> None:
    """The drawn card reports on the network: ``[activity] transactions_per_hour`` (claim 8) and the
    seed's card template (claim 9 at power-up, MSL of the drawn security) beside the handset file."""
    fleet = handset.get("fleet")
    if not isinstance(fleet, dict) or not isinstance(fleet.get("card_template"), str):
        raise ConfigError(
            "product", "needs the network's [fleet] with a card_template (not [[cards]])", source=lab.source
        )
    template = _read_toml(Path(fleet["card_template"]), lab, "network.fleet.card_template")
    template_path = workdir / "card-template.toml"
    template_path.write_text(dumps(product.card_template(template, mix.product)))
    fleet["card_template"] = str(template_path)
    activity = handset.setdefault("activity", {})
    activity["transactions_per_hour"] = float(mix.product["transactions_per_hour"])


def _product_campaign(
    campaign: dict[str, Any], lab: LabConfig, mix: FaultMix, handset_path: Path, workdir: Path
) -> None:
    """The drawn script replaces the base campaign's security, actions, steps and targets; the CSV
    files it names are written beside the campaign file."""
    for key in ("security", "actions", "steps", "targets"):
        campaign.pop(key, None)
    fleet = load_network_inventory(handset_path).fleet  # the identities and key sets the server uses
    identifiers = product.key_identifiers(mix.product, fleet.keysets)
    if identifiers is None:
        kvns = ", ".join(str(k.kvn) for k in fleet.keysets)
        raise ConfigError(
            "product.keyset",
            f"key set {mix.product['keyset']} (seed {mix.seed}) is not one of the fleet's ({kvns})",
            source=lab.source,
        )
    rng = random.Random(mix.product.get("params_seed", 0))
    tables, files = product.campaign_tables(mix.product, fleet, *identifiers, rng)
    campaign.update(tables)
    for name, text in files.items():
        (workdir / name).write_text(text)

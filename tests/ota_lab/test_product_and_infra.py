"""Per-seed product variety ([product]) and infrastructure faults ([infra]) of a lab (docs/labs.md).

Pure draws and file writing: no network runs here. The main proof for configs/labs/infra.toml is
that every seed's files load with the applications' own loaders (the virtual driver that executes
the infrastructure events is the campaign engine's, issue #10)."""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import sim_emulator.api as api
from handset.config import load_config
from ota_lab.cli import main
from ota_lab.config import (
    INFRA_HORIZON,
    CounterChoice,
    InfraKind,
    Integrity,
    LabConfig,
    PorPath,
    Script,
    load_lab,
)
from ota_lab.draw import FaultMix, draw_mix
from ota_lab.product import RFM_ACTIONS
from ota_lab.seed_files import write_configs
from ota_protocols.fleet import DerivedCard, derive_card
from ota_server.config import load_campaign, load_network_inventory
from ota_server.model import Card

ROOT = Path(__file__).resolve().parents[2]
LABS = ROOT / "configs" / "labs"
INFRA, LOSSY, SMOKE = LABS / "infra.toml", LABS / "lossy.toml", LABS / "smoke.toml"


def _old_fields(mix: FaultMix) -> str:
    """What draw_mix returned before [product] and [infra] existed, as a short digest."""
    old = {
        "seed": mix.seed,
        "fleet_size": mix.fleet_size,
        "radio_seed": mix.radio_seed,
        "campaign_seed": mix.campaign_seed,
        "faults": mix.faults,
    }
    return hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]


def _without_new_tables(lab: LabConfig) -> LabConfig:
    return replace(lab, product=None, infra=None)


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("path", [INFRA, LOSSY], ids=["infra", "lossy"])
def test_same_seed_same_product_and_infra_other_seed_other(path: Path) -> None:
    lab = load_lab(path)
    for seed in (1, 17, 4242):
        first, again = draw_mix(lab, seed), draw_mix(lab, seed)
        assert first == again and first.summary() == again.summary()
        assert first.product and first.product != draw_mix(lab, seed + 1).product
    assert len({json.dumps(draw_mix(lab, s).product, sort_keys=True) for s in range(1, 41)}) > 30


def test_same_seed_writes_byte_identical_files(tmp_path: Path) -> None:
    lab = load_lab(INFRA)
    seed = next(s for s in range(1, 100) if draw_mix(lab, s).product["script"] == Script.MULTI_STEP)
    texts = []
    for name in ("a", "b"):
        workdir = tmp_path / name
        workdir.mkdir()
        write_configs(lab, draw_mix(lab, seed), workdir)
        texts.append({p.name: p.read_text().replace(str(workdir), "<W>") for p in sorted(workdir.iterdir())})
    assert texts[0] == texts[1]
    assert set(texts[0]) == {"handset.toml", "campaign.toml", "card-template.toml", "cards.csv"}


# Digests of (seed, fleet_size, radio_seed, campaign_seed, faults) as draw_mix drew them before
# [product] and [infra] existed (commit 946a82d), for the shipped lab files of then.
OLD_DRAWS = {
    ("smoke", 1): "2048d976283c93f3",
    ("smoke", 2): "1f6ea739e5445a5c",
    ("smoke", 17): "0f573724b766593d",
    ("smoke", 500): "3d82dfc683092a6b",
    ("lossy", 1): "70adc46b61a0cc1b",
    ("lossy", 2): "95037710058b2361",
    ("lossy", 17): "8bf329c229eda9c6",
    ("lossy", 500): "267b111deb9997f8",
}


@pytest.mark.parametrize(("name", "seed"), sorted(OLD_DRAWS), ids=[f"{n}-{s}" for n, s in sorted(OLD_DRAWS)])
def test_a_lab_without_product_or_infra_draws_what_it_drew_before(name: str, seed: int) -> None:
    lab = _without_new_tables(load_lab(LABS / f"{name}.toml"))  # lossy.toml had no [product] then
    mix = draw_mix(lab, seed)
    assert _old_fields(mix) == OLD_DRAWS[(name, seed)]
    assert mix.product == {} and mix.infra == ()
    assert " | infra" not in mix.summary() and "spi" not in mix.summary()


def test_product_and_infra_draw_after_everything_older() -> None:
    """Adding [product] and [infra] to a lab keeps its fleet sizes, seeds and faults for every seed."""
    for path in (INFRA, LOSSY):
        lab = load_lab(path)
        for seed in range(1, 30):
            assert _old_fields(draw_mix(lab, seed)) == _old_fields(draw_mix(_without_new_tables(lab), seed))


def test_a_lab_without_product_writes_the_base_campaign(tmp_path: Path) -> None:
    lab = load_lab(SMOKE)
    handset_path, campaign_path = write_configs(lab, draw_mix(lab, 3), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["campaign.toml", "handset.toml"]
    handset = tomllib.loads(handset_path.read_text())
    campaign = tomllib.loads(campaign_path.read_text())
    assert "activity" not in handset
    assert handset["fleet"]["card_template"] == str((ROOT / "configs/cards/fleet-template.toml").resolve())
    assert campaign["security"]["spi"] == "1639" and len(campaign["actions"]) == 2 and "steps" not in campaign


# --------------------------------------------------------------------------- coverage


def _draws(path: Path, seeds: range) -> list[FaultMix]:
    lab = load_lab(path)
    return [draw_mix(lab, seed) for seed in seeds]


@pytest.mark.parametrize("path", [INFRA, LOSSY], ids=["infra", "lossy"])
def test_every_product_choice_appears_over_200_seeds(path: Path) -> None:
    products = [mix.product for mix in _draws(path, range(1, 201))]
    seen = {key: {p[key] for p in products if key in p} for key in set().union(*products)}
    assert seen["por_path"] == {p.value for p in PorPath}
    assert seen["cipher"] == {True, False}
    assert seen["integrity"] == {i.value for i in Integrity}
    assert seen["counter"] == {c.value for c in CounterChoice}
    assert seen["keyset"] == {1, 2}
    assert {p["script"] for p in products} == {s.value for s in Script}
    assert seen["information_at_power_up"] == {True, False}
    assert {p["rfm_actions"] for p in products if p["script"] == Script.RFM} == set(
        range(1, len(RFM_ACTIONS) + 1)
    )
    multi = [p for p in products if p["script"] == Script.MULTI_STEP]
    assert {p["run_if"] for p in multi} == {"confirmed", "always"}
    assert min(p["target_share"] for p in multi) < 0.5 < max(p["target_share"] for p in multi)
    spis = {p["spi"] for p in products}
    assert {"1639", "1619", "1229", "1209", "1125", "1105"} <= spis  # cipher x PoR path, and RC
    # An RC command is never ciphered (the card would echo CNTR 0: see ota_lab/draw.py).
    assert all(not p["cipher"] for p in products if p["integrity"] == Integrity.RC)
    rates = [p["transactions_per_hour"] for p in products]
    assert max(rates) > 0 and all(r >= 0 for r in rates)


def test_every_infra_kind_appears_over_200_seeds_within_its_ranges() -> None:
    lab = load_lab(INFRA)
    assert lab.infra is not None and lab.timing.deadline_s is not None
    horizon = lab.timing.deadline_s * INFRA_HORIZON
    per_seed: list[Counter[InfraKind]] = []
    for mix in _draws(INFRA, range(1, 201)):
        assert list(mix.infra) == sorted(mix.infra, key=lambda e: e.at)
        assert all(0.0 <= e.at <= horizon for e in mix.infra)
        counts = Counter(e.kind for e in mix.infra)
        per_seed.append(counts)
        assert counts[InfraKind.SMSC_RESTART] <= 2 and counts[InfraKind.LINK_DROP] <= 2
        assert counts[InfraKind.SERVER_CRASH] <= 2 and counts[InfraKind.DB_FAILURE] <= 1
        assert counts[InfraKind.SECOND_RUNNER] <= 1
        for event in mix.infra:
            low, high = {
                InfraKind.SMSC_RESTART: (0.5, 3.0),
                InfraKind.LINK_DROP: (0.2, 2.0),
                InfraKind.SERVER_CRASH: (0.5, 3.0),
                InfraKind.DB_FAILURE: (0.5, 3.0),
                InfraKind.SECOND_RUNNER: (0.0, 0.0),
            }[event.kind]
            assert low <= event.duration <= high, event
        if mix.infra:
            assert " | infra " in mix.summary()
    assert {kind for counts in per_seed for kind in counts} == set(InfraKind)
    # Each count's whole range is drawn (0 included), and a second runner is the exception.
    for kind, high in ((InfraKind.SMSC_RESTART, 2), (InfraKind.SERVER_CRASH, 2), (InfraKind.DB_FAILURE, 1)):
        assert {counts[kind] for counts in per_seed} == set(range(high + 1)), kind
    assert 0 < sum(counts[InfraKind.SECOND_RUNNER] for counts in per_seed) < 100


# --------------------------------------------------------------------------- the written files


def _expected_counted_actions(product: dict[str, Any]) -> int:
    return {Script.RFM: int(product.get("rfm_actions", 0)), Script.RAM: 6}.get(Script(product["script"]), 0)


def test_infra_lab_seeds_1_to_50_write_files_the_applications_load(tmp_path: Path) -> None:
    lab = load_lab(INFRA)
    scripts: set[str] = set()
    for seed in range(1, 51):
        mix = draw_mix(lab, seed)
        workdir = tmp_path / str(seed)
        workdir.mkdir()
        handset_path, campaign_path = write_configs(lab, mix, workdir)
        handset = load_config(handset_path)
        campaign = load_campaign(campaign_path)
        p = mix.product
        scripts.add(p["script"])
        assert handset.fleet is not None and handset.fleet.count == mix.fleet_size
        assert handset.activity.transactions_per_hour == p["transactions_per_hour"]
        template = api.load_card_template(handset.resolve(handset.fleet.card_template))
        assert template.options.info_message_on_power_up is p["information_at_power_up"]
        for step in campaign.steps:  # the drawn security on every step; the cards' MSL accepts it
            assert step.security.spi.to_bytes().hex() == p["spi"]
            assert step.security.spi.por_via_sms_submit is (p["por_path"] == PorPath.SMS_SUBMIT)
            assert step.security.spi.ciphering is p["cipher"]
            assert step.security.kic >> 4 == step.security.kid >> 4 == p["keyset"]
        assert all(app.msl == int(p["spi"][:2], 16) for app in template.app_profiles)
        script = Script(p["script"])
        if script in (Script.RFM, Script.RAM):
            assert len(campaign.steps) == 1 and len(campaign.actions) == _expected_counted_actions(p)
            assert campaign.targets.csv is None
            continue
        # Purse and multi-step: [[steps]] with per-card parameters from the seed's CSV.
        fleet = load_network_inventory(handset_path).fleet
        cards = [derive_card(replace(fleet, keysets=()), i) for i in fleet.indices]
        reload = campaign.steps[-1]
        assert reload.per_card is not None and campaign.targets.csv is not None
        amounts = {key: actions[-1].label for key, actions in reload.per_card.items()}  # "purse_reload N"
        assert len(amounts) == len(cards) and len(set(amounts.values())) > 1
        selected = [card for card in cards if campaign.targets.selects(_card(card))]
        if script is Script.PURSE:
            assert [s.name for s in campaign.steps] == ["limit", "reload"]
            assert len(selected) == len(cards)
        else:
            assert [s.name for s in campaign.steps] == ["files", "limit", "reload"]
            assert campaign.steps[1].run_if == p["run_if"]
            assert len(selected) == max(1, round(len(cards) * p["target_share"]))
            assert len(selected) < len(cards) or p["target_share"] > 0.98
            spns = {actions[0].counted.data for actions in campaign.steps[0].per_card.values()}
            assert len(spns) == len(cards)  # every card its own EF.SPN
    assert scripts == {s.value for s in Script}


def _card(derived: DerivedCard) -> Card:
    return Card(iccid=derived.iccid, imsi=derived.imsi, msisdn=derived.msisdn, index=derived.index)


def test_lossy_lab_seeds_write_files_the_applications_load(tmp_path: Path) -> None:
    lab = load_lab(LOSSY)
    for seed in range(1, 13):
        mix = draw_mix(lab, seed)
        workdir = tmp_path / str(seed)
        workdir.mkdir()
        handset_path, campaign_path = write_configs(lab, mix, workdir)
        assert load_config(handset_path).activity.transactions_per_hour > 0  # card messages appear
        assert load_campaign(campaign_path).steps[0].security.spi.to_bytes().hex() == mix.product["spi"]


# --------------------------------------------------------------------------- errors

BASE = (
    f'[network]\nhandset_config = "{(ROOT / "configs" / "handset.toml").as_posix()}"\n'
    f'[campaign]\npath = "{(ROOT / "configs" / "campaigns" / "demo.toml").as_posix()}"\n'
)
TIMING = "[timing]\ndeadline_s = 40.0\n"


@pytest.mark.parametrize(
    ("extra", "key_path"),
    [
        ('[product]\nscript = ["rfm", "ota"]\n', "product.script[1]"),
        ('[product]\nscript = "rfm"\n', "product.script"),
        ("[product]\nscript = []\n", "product.script"),
        ('[product]\npor_path = ["sms-submit", "sms-submit"]\n', "product.por_path[1]"),
        ('[product]\ncounter = ["higher", "one-higher"]\n', "product.counter[1]"),
        ('[product]\ncounter = ["no-check"]\n', "product.counter[0]"),
        ('[product]\ncipher = ["yes"]\n', "product.cipher[0]"),
        ("[product]\nkeyset = [0]\n", "product.keyset[0]"),
        ("[product]\ntransactions_per_hour = [60, 30]\n", "product.transactions_per_hour"),
        ("[product]\nsurprise = 1\n", "product.surprise"),
        ('security = { spi = "1639" }\n[product]\n', "campaign.security"),
        (TIMING + "[infra]\nsmsc_restarts = [2, 1]\n", "infra.smsc_restarts"),
        (TIMING + "[infra]\nlink_drops = [0, 1.5]\n", "infra.link_drops"),
        (TIMING + "[infra]\ndb_failures = [0, 99]\n", "infra.db_failures"),
        (TIMING + "[infra]\nsecond_runner = [0.0, 1.5]\n", "infra.second_runner"),
        (TIMING + "[infra]\nlink_drops = 1\nlink_drop_s = [1.0, 40.0]\n", "infra.link_drop_s"),
        (TIMING + "[infra]\nserver_crashs = [0, 2]\n", "infra.server_crashs"),
        ("[infra]\nserver_crashes = [0, 2]\n", "timing.deadline_s"),
        ("[product]\nkeyset = [3]\n", "product.keyset"),  # found when the seed's files are written
    ],
)
def test_product_and_infra_errors_name_file_and_key_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, key_path: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BASE + extra)  # BASE ends inside [campaign]: a leading key line joins it
    assert main(["run", str(path), "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"ota-lab: {path}: {key_path}:"), err


def test_unsafe_counter_modes_are_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(BASE + '[product]\ncounter = ["higher", "no-counter"]\n')
    with pytest.raises(Exception, match=r"product\.counter\[1\]: 'no-counter' is not safe for resends"):
        load_lab(path)


def test_a_product_lab_needs_no_base_campaign_file(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(
        f'[network]\nhandset_config = "{(ROOT / "configs" / "handset.toml").as_posix()}"\n'
        '[lab]\nfleet_size = 3\n[product]\nscript = ["purse"]\n'
    )
    lab = load_lab(path)
    assert lab.campaign_path is None and lab.product is not None and lab.product.script == (Script.PURSE,)
    mix = draw_mix(lab, 1)
    assert mix.product["spi"] == "1639" and mix.product["keyset"] == 1  # the demo's security by default
    _, campaign_path = write_configs(lab, mix, tmp_path)
    campaign = load_campaign(campaign_path)
    assert campaign.smsc.system_id == "ota" and [s.name for s in campaign.steps] == ["limit", "reload"]

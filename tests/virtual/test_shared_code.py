"""The virtual lab runs the applications' own code through their public hooks (docs/labs.md "Virtual
time"): card snapshots (sim_emulator.api), the radio forgetting a sleeping phone, the pure network
core (handset.network_core) and shards. Deterministic, no sockets, no sleeps."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import sim_emulator.api as api
from handset.config import HandsetConfig, SmscConfig
from handset.network_core import BASE_COUNTERS, Later, NetworkCore, Phone, ToEsme
from handset.radio_link import Direction, DirectionFaults, OfflineModel, RadioConfig, RadioLink
from ota_lab.cli import main
from ota_lab.config import load_lab
from ota_lab.virtual import run_virtual
from ota_lab.virtual.driver import merge_shards, run_shard
from ota_protocols.fleet import FleetSpec

ROOT = Path(__file__).resolve().parents[2]
LOSSY = ROOT / "configs" / "labs" / "lossy.toml"
TEMPLATE = ROOT / "configs" / "cards" / "fleet-template.toml"


def test_snapshot_restores_the_persistent_state_deterministically() -> None:
    template = api.load_card_template(TEMPLATE)
    spec = FleetSpec(seed="snap", count=4)
    zdict = api.snapshot_dictionary(template, 0)
    card = api.card_from_fleet(spec, 2, template)
    blob = card.snapshot(zdict)
    assert blob == api.card_from_fleet(spec, 2, template).snapshot(zdict)  # deterministic
    assert len(blob) < 400
    again = api.card_from_fleet(spec, 2, template, state=blob, zdict=zdict)
    assert again.report() == card.report() and again.snapshot(zdict) == blob
    tar = card.report()["applications"][0]["tar"]
    expected = next(a for a in card.report()["applications"] if a["tar"] == tar)
    got = api.snapshot_application(template, 2, blob, tar, zdict=zdict)
    assert got == {k: expected[k] for k in ("tar", "action_counter", "journal")}
    assert api.snapshot_application(template, 2, None, tar) == got  # never touched: the template's
    assert b"kic" not in blob.lower()  # compressed, but never the keys in the clear either


def test_radio_forgets_a_phone() -> None:
    radio = RadioLink(
        RadioConfig(
            mt=DirectionFaults(p_good_to_bad=1.0, p_bad_to_good=0.0, loss_in_bad=1.0),
            offline=OfflineModel(offline_probability=0.5, mean_offline_s=10.0),
        )
    )
    rng = random.Random(1)
    assert radio.transmit(Direction.MT, "4917", b"\x00", 0.0, rng) == []
    radio.is_offline("4917", 0.0, rng)
    assert radio._bad and radio._schedules
    radio.forget("4917")
    assert not radio._bad and not radio._schedules and radio.online_again_at("4917") is None


def test_network_core_one_mt_in_flight_and_rp_timeout_retry() -> None:
    """The pure core: an MT goes out, a second waits; no report -> RP timeout -> retry (Later)."""

    class _Me:
        awaiting_terminal_response = False

    class _Msg:
        def __init__(self, n: int) -> None:
            self.message_id, self.tpdu, self.origin_system_id = str(n), b"\x04", "esme"
            self.submit = None
            self.submitted_at = None
            self.expires_at, self.attempts = 100.0, 0

    config = HandsetConfig(smsc=SmscConfig(rp_timeout_s=2.0, retry_min_s=1.0, retry_max_s=4.0))
    core = NetworkCore(config, RadioLink(RadioConfig()), random.Random(0), date_of=lambda now: None)  # type: ignore[arg-type,return-value]
    phone = Phone("4917", None, _Me(), random.Random(1))  # type: ignore[arg-type]
    first = core.submit(phone, _Msg(1), 0.0)  # type: ignore[arg-type]
    assert [type(a) for a in first] == [Later, Later] and core.queued == 1
    assert core.submit(phone, _Msg(2), 0.5) == []  # type: ignore[arg-type]  # one MT in flight
    timer = first[1]
    retry = core.fire(timer, 2.0)
    assert core.counters["mt_rp_timeouts"] == 1 and len(retry) == 1 and retry[0].at == 3.0
    assert core.fire(timer, 2.0) == []  # a timer fires once: stale generations do nothing
    again = core.fire(retry[0], 3.0)
    assert core.counters["mt_transmissions"] == 2 and any(isinstance(a, Later) for a in again)
    assert not any(isinstance(a, ToEsme) for a in again)
    assert set(BASE_COUNTERS) <= set(core.counters)


def test_shards_same_seed_same_k_byte_identical(tmp_path: Path) -> None:
    reports = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.json"
        assert main(["run", str(LOSSY), "--seed", "5", "--shards", "2", "--report", str(path)]) == 0
        reports.append(path.read_bytes())
    assert reports[0] == reports[1]
    report = json.loads(reports[0])
    assert report["ok"] and report["summary"]["cards"] == len(report["cards"])
    iccids = [c["iccid"] for c in report["cards"]]
    assert iccids == sorted(iccids)  # merged in fleet (seed) order


def test_merged_shards_cover_every_card_once() -> None:
    lab = load_lab(LOSSY)
    whole = run_virtual(lab, 9)
    parts = [run_shard(lab, 9, s, 3) for s in range(3)]
    merged = merge_shards(parts)
    assert merged.ok and whole.ok
    assert merged.summary["cards"] == whole.summary["cards"] == sum(p.summary["cards"] for p in parts)
    assert [c["iccid"] for c in merged.cards] == [c["iccid"] for c in whole.cards]
    assert merged.network["mt_accepted"] == sum(p.network["mt_accepted"] for p in parts)


def test_shards_option_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(LOSSY), "--seed", "1", "--shards", "0"]) == 2
    assert main(["run", str(LOSSY), "--seed", "1", "--shards", "2", "--transport", "smpp"]) == 2
    assert "--shards" in capsys.readouterr().err

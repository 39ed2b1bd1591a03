"""``ota-server serve`` against a real loopback network: a campaign created, paused, resumed and
finished through the HTTP API ends with verification 0/0/0 (the cards' own journals); the CLI's
real uvicorn server on 127.0.0.1 port 0; and the dashboard in headless Chromium (Selenium) while a
campaign runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from handset.metrics import metrics_text as handset_metrics
from ota_server.http.app import build_app
from ota_server.http.platform import Platform
from ota_server.http.serve import bind_socket, uvicorn_server
from ota_server.service import verification
from tests.integration.network import (
    RFM_THREE_ACTIONS,
    ROOT,
    Network,
    campaign_toml,
    handset_toml,
    running_network,
    stop_after,
)
from tests.support.components import on_path, require

pytestmark = pytest.mark.integration

TOKEN = "it-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TOML = {**AUTH, "Content-Type": "application/toml"}
ACTIONS = RFM_THREE_ACTIONS


@contextlib.asynccontextmanager
async def api(
    tmp: Path, network: Network, db: Path | str | None = None
) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    """The app in this loop through httpx's ASGI transport (the lifespan is ours to run)."""
    platform = Platform(db or tmp / "ota.sqlite", smsc=("127.0.0.1", network.port), poll_s=0.01)
    app = build_app(platform, token=TOKEN)
    platform.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ota") as client:
            yield platform, client
    finally:
        await platform.close()


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{{{wanted}}} in /metrics")


@pytest.mark.asyncio
async def test_campaign_created_paused_resumed_and_finished_through_the_api_verifies(
    tmp_path: Path, db_url: str
) -> None:
    """On both stores: a SQLite file, and PostgreSQL (the serve process of many hosts' operators)."""
    async with (
        running_network(tmp_path, handset_toml(count=24)) as network,
        api(tmp_path, network, db_url) as (
            platform,
            client,
        ),
    ):
        reached = stop_after(network, 10)
        answer = await client.post(
            "/api/campaigns", content=campaign_toml(network.config_path, actions=ACTIONS), headers=TOML
        )
        assert answer.status_code == 201, answer.text
        assert answer.headers["location"] == "/api/campaigns/it"
        again = await client.post(
            "/api/campaigns", content=campaign_toml(network.config_path, actions=ACTIONS), headers=TOML
        )
        assert again.status_code == 409 and "already running" in again.json()["error"]
        runner = platform.hosted["it"].runner
        async with asyncio.timeout(60):
            await reached.wait()
            assert (await client.post("/api/campaigns/it/pause")).status_code == 401  # no token
            paused = await client.post("/api/campaigns/it/pause", headers=AUTH)
            assert paused.status_code == 200 and paused.json()["state"] == "paused"
            await runner.state_changed.wait()
            status = (await client.get("/api/campaigns/it")).json()
            assert status["live"]["engine_state"] == "paused" and status["status"] == "paused"
            runner.state_changed.clear()
            assert (await client.post("/api/campaigns/it/resume", headers=AUTH)).status_code == 200
            await runner.state_changed.wait()
            task = platform.hosted["it"].task
            assert task is not None
            await task
        assert platform.hosted["it"].error is None
        proof = verification(runner.outcomes(), runner.actions, runner.tar_hex, network.service.report())
        assert proof["lost_actions"] == proof["duplicated_actions"] == proof["counter_mismatches"] == 0

        listed = (await client.get("/api/campaigns")).json()["campaigns"]
        assert [(c["campaign"], c["state"]) for c in listed] == [("it", "finished")]
        report = (await client.get("/api/campaigns/it/report")).json()
        summary = report["summary"]
        assert summary["cards"] == 24 and summary["pending"] == 0
        # Cards whose fleet index % 10 == 7 lack EF.CBMI: partial with 6A82, the rest confirmed.
        assert summary["partial"] == 2 and summary["confirmed"] == 22
        assert report["failures"]["by_status_word"] == {"partial: SW 6A82": 2}
        csv_text = (await client.get("/api/campaigns/it/report", params={"format": "csv"})).text
        assert len(csv_text.splitlines()) == 1 + 24 and csv_text.startswith("iccid,msisdn,step,tar,state")

        card = report["cards"][0]
        one = (await client.get(f"/api/campaigns/it/cards/{card['msisdn']}")).json()
        assert one["jobs"][0]["state"] == card["state"]
        kinds = [(row["direction"], row["kind"]) for row in one["audit"]]
        assert ("mt", "script") in kinds and ("mo", "por") in kinds
        full = (await client.get(f"/api/cards/{card['iccid']}")).json()
        assert full["jobs"][0]["campaign"] == "it" and "kic" not in full["keysets"][0]
        assert full["keysets"][0]["cntr"] >= 1
        assert (
            await client.get(f"/api/cards/{card['iccid']}", params={"with_keys": "true"})
        ).status_code == 401
        keyed = (
            await client.get(f"/api/cards/{card['iccid']}", params={"with_keys": "true"}, headers=AUTH)
        ).json()
        assert len(bytes.fromhex(keyed["keysets"][0]["kic"])) in (16, 24, 32)

        text = (await client.get("/metrics")).text
        stats = runner.stats
        assert metric(text, "ota_por_total", campaign="it", status="00") == stats.por_status[0] > 0
        assert metric(text, "ota_messages_accepted_total", campaign="it") == stats.submit_accepted
        ok = metric(
            text,
            "ota_submit_sm_resp_total",
            campaign="it",
            command_status="0x00000000",
            status_name="ESME_ROK",
        )
        assert ok == stats.submit_accepted
        assert metric(text, "ota_por_latency_seconds_count", campaign="it") == stats.por_status.total()
        assert metric(text, "ota_jobs", campaign="it", state="done") == 22
        assert metric(text, "ota_campaign_state", campaign="it", state="finished") == 1
        # The SMSC side's /metrics (handset serve --metrics) counts the same submits from its end.
        smsc = handset_metrics(network.service)
        accepted = metric(
            smsc, "handset_submit_sm_total", command_status="0x00000000", status_name="ESME_ROK"
        )
        assert accepted == stats.submit_accepted
        assert metric(smsc, "handset_deliver_sm_total", result="ok") >= stats.por_received
        assert metric(smsc, "handset_mt_queue_depth") == 0
        # A finished campaign cannot be paused; an unknown one is 404.
        assert (await client.post("/api/campaigns/it/pause", headers=AUTH)).status_code == 409
        assert (await client.post("/api/campaigns/nope/pause", headers=AUTH)).status_code == 404


@contextlib.asynccontextmanager
async def serve_process(tmp: Path, *where: str) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """``ota-server serve --http 127.0.0.1:0 WHERE...`` as a child; yields its base URL. The caller
    stops it (SIGTERM); a child still running at the end is killed."""
    (tmp / "token").write_text(TOKEN + "\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ota_server.cli", "serve", "--db", str(tmp / "ota.sqlite"),
        "--http", "127.0.0.1:0", "--token-file", str(tmp / "token"), "--max-body", "4096", *where,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode()
        match = re.search(r"serving (http://127\.0\.0\.1:\d+)/", line)
        assert match, line + (await proc.stderr.read()).decode()
        yield match.group(1), proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def run_to_end(client: httpx.AsyncClient, toml: str, name: str) -> dict[str, Any]:
    created = await client.post("/api/campaigns", content=toml, headers=TOML)
    assert created.status_code == 201, created.text
    while (status := (await client.get(f"/api/campaigns/{name}")).json())["state"] != "finished":
        await asyncio.sleep(0.05)  # polling the API: the caller's timeout bounds it
    return status


@pytest.mark.asyncio
async def test_cli_serves_on_a_real_loopback_port_and_stops_on_sigterm(tmp_path: Path) -> None:
    """``ota-server serve --http 127.0.0.1:0 --smsc``: the printed port answers over real TCP
    (uvicorn), a campaign runs to its end there, and SIGTERM stops it with exit 0."""
    async with (
        running_network(tmp_path, handset_toml(count=6)) as network,
        serve_process(tmp_path, "--smsc", f"127.0.0.1:{network.port}") as (base, proc),
        asyncio.timeout(60),
        httpx.AsyncClient(base_url=base) as client,
    ):
        toml = campaign_toml(network.config_path, actions=ACTIONS[:1], name="cli")
        assert (await client.post("/api/campaigns", content=toml)).status_code == 401
        big = await client.post("/api/campaigns", content=b"#" * 5000, headers=TOML)
        assert big.status_code == 413 and big.json()["field"] is None

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):  # no Content-Length: refused while reading
                yield b"#" * 1000

        assert (await client.post("/api/campaigns", content=chunks(), headers=TOML)).status_code == 413
        status = await run_to_end(client, toml, "cli")
        assert status["cards"]["confirmed"] == 6
        metrics = await client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert metric(metrics.text, "ota_jobs", campaign="cli", state="done") == 6
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
    assert proc.stderr is not None
    stderr = (await proc.stderr.read()).decode()
    assert TOKEN not in stderr and "Traceback" not in stderr


@pytest.mark.asyncio
async def test_serve_with_its_own_network_keeps_the_cards_across_campaigns(tmp_path: Path) -> None:
    """Without --smsc: ONE embedded network (--network) for the server's life, so a second campaign
    meets the cards the first one changed (their counters and action counters), as on a real one."""
    handset = tmp_path / "handset.toml"
    handset.write_text(handset_toml(count=6))
    async with (
        serve_process(tmp_path, "--network", str(handset), "--campaign-dir", str(tmp_path)) as (base, proc),
        asyncio.timeout(90),
        httpx.AsyncClient(base_url=base) as client,
    ):
        for name in ("first", "second"):
            toml = campaign_toml(
                Path("handset.toml"), actions=ACTIONS[:1], name=name
            )  # relative: --campaign-dir
            assert (await run_to_end(client, toml, name))["cards"]["confirmed"] == 6
        second = (await client.get("/api/campaigns/second/report")).json()
        assert {c["confirmed_counter"] for c in second["cards"]} == {2}  # one action each campaign
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0


# --------------------------------------------------------------------------- the dashboard in a browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,800",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def _row_values(driver: Any, name: str) -> dict[str, Any] | None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        row = driver.find_element(By.CSS_SELECTOR, f'tr[data-campaign="{name}"]')
        bar = row.find_element(By.CSS_SELECTOR, "td.progress")
        counts = {
            k: row.find_element(By.CSS_SELECTOR, f'td[data-count="{k}"]').text
            for k in ("confirmed", "partial", "failed", "pending")
        }
        return {
            "status": row.get_attribute("data-status"),
            "done": int(bar.get_attribute("data-done") or 0),
            "total": int(bar.get_attribute("data-total") or 0),
            **counts,
        }
    except (NoSuchElementException, StaleElementReferenceException):
        return None  # the table is redrawn every second: look again


def _wait_for(driver: Any, name: str, check: Any, timeout_s: float = 60.0) -> dict[str, Any]:
    from selenium.webdriver.support.ui import WebDriverWait

    seen: dict[str, Any] = {}

    def ready(d: Any) -> bool:
        values = _row_values(d, name)
        if values is not None and check(values):
            seen.update(values)
            return True
        return False

    WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(ready)
    return seen


@pytest.mark.asyncio
async def test_dashboard_in_chromium_follows_a_running_campaign_to_the_report(tmp_path: Path) -> None:
    require(
        "chromium + chromedriver",
        CHROMIUM.exists() and CHROMEDRIVER.exists() and on_path("chromium"),
        "apt install chromium chromium-driver (Debian), pip install selenium",
    )
    async with running_network(tmp_path, handset_toml(count=40)) as network:
        platform = Platform(tmp_path / "ota.sqlite", smsc=("127.0.0.1", network.port), poll_s=0.01)
        sock = bind_socket("127.0.0.1", 0)
        server = uvicorn_server(build_app(platform, token=TOKEN))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        driver = None
        try:
            async with asyncio.timeout(120), httpx.AsyncClient(base_url=base) as client:
                # 20 SMS/s so that the progress is seen to advance; paused after 10 so that the
                # browser, however slow to start, opens on a campaign in the middle.
                toml = campaign_toml(network.config_path, actions=ACTIONS, name="browser")
                toml = toml.replace("window = 32\n", "") + "[pacing]\nmessages_per_second = 20\n"
                reached = stop_after(network, 10)
                assert (await client.post("/api/campaigns", content=toml, headers=TOML)).status_code == 201
                await reached.wait()
                assert (await client.post("/api/campaigns/browser/pause", headers=AUTH)).status_code == 200
                driver = await asyncio.to_thread(_browser)
                await asyncio.to_thread(driver.get, base + "/")
                paused = await asyncio.to_thread(
                    _wait_for, driver, "browser", lambda v: v["status"] == "paused" and v["total"] == 40
                )
                assert paused["done"] < paused["total"]
                assert (await client.post("/api/campaigns/browser/resume", headers=AUTH)).status_code == 200
                await asyncio.to_thread(
                    _wait_for,
                    driver,
                    "browser",
                    # seen moving, not only ended: more done than when paused, not yet all
                    lambda v: v["status"] == "running" and paused["done"] < v["done"] < v["total"],
                )
                final = await asyncio.to_thread(
                    _wait_for, driver, "browser", lambda v: v["status"] == "finished" and v["pending"] == "0"
                )
                report = (await client.get("/api/campaigns/browser/report")).json()
                for key in ("confirmed", "partial", "failed", "pending"):
                    assert int(final[key]) == report["summary"][key], key
                assert final["done"] == final["total"] == 40
                # The card search shows one card's audit trail.
                iccid = report["cards"][0]["iccid"]

                def search() -> list[str]:
                    from selenium.webdriver.common.by import By
                    from selenium.webdriver.support.ui import WebDriverWait

                    box = driver.find_element(By.ID, "card-id")
                    box.send_keys(iccid)
                    driver.find_element(By.CSS_SELECTOR, "#card-search button").click()
                    WebDriverWait(driver, 30).until(
                        lambda d: d.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
                    )
                    return [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#audit tbody tr")]

                rows = await asyncio.to_thread(search)
                assert any(" mt script " in f" {r} " for r in rows) and any("por" in r for r in rows)
                shot = tmp_path / "dashboard.png"
                assert await asyncio.to_thread(driver.save_screenshot, str(shot))
                assert shot.stat().st_size > 1000
        finally:
            if driver is not None:
                await asyncio.to_thread(driver.quit)
            server.should_exit = True
            await serving
            sock.close()

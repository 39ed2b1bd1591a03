"""The HTTP API of ``ota-server serve`` through Starlette's test client: every route, and bad input
(wrong types, unknown keys, missing or wrong token, oversized and malformed bodies) answered with one
JSON error naming the field, never a traceback. Campaigns that run to their end: tests/integration/
test_http_service.py."""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from ota_server.config import campaign_from_mapping, campaign_from_toml
from ota_server.http.app import build_app
from ota_server.http.platform import Platform

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "unit-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CSV = (ROOT / "configs" / "pcsc" / "cards.csv").read_text()
CAMPAIGN = f"""
[campaign]
name = "api"
[network]
handset_config = "{(ROOT / "configs" / "handset.toml").as_posix()}"
[smsc]
system_id = "ota"
password = "secret"
reconnect_window_s = 600
[targets]
fleet = true
[security]
spi = "1639"
kic = "12"
kid = "12"
tar = "b00010"
[[actions]]
type = "update_binary"
path = "3F00/7F20/6F46"
offset = 0
data = "01"
"""


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    # The SMSC is a closed port: campaigns start (their checks pass) and wait for a bind.
    platform = Platform(tmp_path / "ota.sqlite", smsc=("127.0.0.1", 1), poll_s=0.01)
    with TestClient(build_app(platform, token=TOKEN, max_body=4096), raise_server_exceptions=False) as c:
        yield c


def error(answer: Any, status: int) -> tuple[str, str | None]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"error", "field"} and "Traceback" not in body["error"]
    return body["error"], body["field"]


def post_toml(client: TestClient, text: str, **headers: str) -> Any:
    return client.post(
        "/api/campaigns", content=text, headers={"Content-Type": "application/toml", **headers}
    )


# --------------------------------------------------------------------------- reading


def test_dashboard_static_files_and_empty_lists(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'src="/static/dashboard.js"' in page.text
    assert client.get("/static/dashboard.js").status_code == 200
    assert client.get("/static/dashboard.css").status_code == 200
    assert client.get("/api/campaigns").json() == {"campaigns": []}
    assert client.get("/api/dashboard").json() == {"campaigns": []}
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE ota_por_latency_seconds histogram" in metrics.text
    assert "ota_campaigns_active 0\n" in metrics.text


def test_unknown_routes_methods_campaigns_cards_and_query_parameters(client: TestClient) -> None:
    assert error(client.get("/api/nothing"), 404) == ("Not Found", None)
    assert error(client.delete("/api/campaigns"), 405) == ("Method Not Allowed", None)
    assert error(client.get("/api/campaigns/none"), 404)[0] == "no campaign 'none'"
    assert error(client.get("/api/campaigns/none/report"), 404)[0] == "no campaign 'none'"
    assert error(client.get("/api/cards/8988"), 404)[0] == "no card with ICCID or MSISDN '8988'"
    assert error(client.get("/api/campaigns?page=2"), 422)[1] == "page"
    assert error(client.get("/metrics?x=1"), 422)[1] == "x"


def test_an_unexpected_failure_is_json_without_a_traceback(client: TestClient, caplog: Any) -> None:
    def broken() -> list[Any]:
        raise RuntimeError("boom")

    platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
    platform.campaigns = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR):
        message, field = error(client.get("/api/campaigns"), 500)
    assert message == "internal error (see the server's log)" and field is None
    assert "boom" in caplog.text  # the log has it, the client does not


# --------------------------------------------------------------------------- the token


def test_every_post_needs_the_token(client: TestClient) -> None:
    for path in ("/api/campaigns", "/api/campaigns/x/pause", "/api/campaigns/x/resume", "/api/cards"):
        answer = client.post(path, content=b"")
        assert error(answer, 401)[0].startswith("missing or wrong bearer token")
        assert answer.headers["www-authenticate"] == 'Bearer realm="ota-server"'
    wrong = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
    assert error(post_toml(client, CAMPAIGN, **wrong), 401)
    assert error(post_toml(client, CAMPAIGN, Authorization=TOKEN), 401)  # no scheme
    assert error(client.post("/api/cards", content=CSV, headers={"Content-Type": "text/csv", **wrong}), 401)


def test_a_server_without_token_is_read_only(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "ota.sqlite", smsc=("127.0.0.1", 1))
    with TestClient(build_app(platform, token=None)) as client:
        assert error(post_toml(client, CAMPAIGN, **AUTH), 403)[0].startswith("this server has no token")
        assert client.get("/api/campaigns").status_code == 200


def test_the_token_is_never_logged(client: TestClient, caplog: Any) -> None:
    with caplog.at_level(logging.DEBUG):
        post_toml(client, CAMPAIGN.replace('"api"', '"logged"'), **AUTH)
        post_toml(client, "[campaign]\nname = 1\n", **AUTH)
        client.post("/api/campaigns", content=CAMPAIGN, headers={"Authorization": "Bearer wrong"})
    assert TOKEN not in caplog.text


# --------------------------------------------------------------------------- creating a campaign


def test_campaign_errors_name_the_field_as_the_toml_loader_does(client: TestClient) -> None:
    cases = [
        ("[campaign]\nname = 1\n", "campaign.name", "expected a string, got 1"),
        (CAMPAIGN.replace("[smsc]", "[smsc]\nwindoww = 3"), "smsc.windoww", "unknown key"),
        (CAMPAIGN.replace('path = "3F00/7F20/6F46"', 'path = "3F00/7F2"'), "actions[0].path", None),
        (CAMPAIGN.replace('spi = "1639"', "spi = 5"), "security.spi", None),
    ]
    for text, field, message in cases:
        got_message, got_field = error(post_toml(client, text, **AUTH), 422)
        assert got_field == field, got_message
        if message is not None:
            assert got_message == message
    message, field = error(post_toml(client, "[campaign\n", **AUTH), 422)
    assert message.startswith("not valid TOML") and field is not None and field.endswith("request.toml")


def test_json_bodies_wrong_types_unknown_keys_and_malformed_json(client: TestClient) -> None:
    def post_json(body: bytes | str) -> Any:
        return client.post(
            "/api/campaigns", content=body, headers={"Content-Type": "application/json", **AUTH}
        )

    assert error(post_json('{"campaign": '), 400)[0].startswith("malformed JSON")
    assert error(post_json("[1, 2]"), 422)[0] == "expected a JSON object, got list"
    assert error(post_json(b"\xff\xfe"), 400)[0].startswith("malformed JSON")
    raw = tomllib.loads(CAMPAIGN)
    raw["retry"] = {"max_attempts": "4"}
    assert error(post_json(json.dumps(raw)), 422) == ("expected an integer, got '4'", "retry.max_attempts")
    raw["retry"] = {"max_atempts": 4}
    assert error(post_json(json.dumps(raw)), 422) == ("unknown key", "retry.max_atempts")
    raw.pop("retry")
    raw["campaign"]["start_at"] = "soon"
    assert error(post_json(json.dumps(raw)), 422)[1] == "campaign.start_at"


def test_unsupported_media_types_and_non_utf8_toml(client: TestClient) -> None:
    answer = client.post("/api/campaigns", content=CAMPAIGN, headers={"Content-Type": "text/html", **AUTH})
    assert error(answer, 415) == (
        "Content-Type text/html: send application/toml or application/json",
        "Content-Type",
    )
    assert error(client.post("/api/campaigns", content=CAMPAIGN, headers=AUTH), 415)[0].startswith(
        "Content-Type missing"
    )
    assert error(post_toml(client, "name = '\xff'".encode("latin-1").decode("latin-1"), **AUTH), 422)
    bad = client.post(
        "/api/campaigns",
        content=b"[campaign]\nname = '\xff'\n",
        headers={"Content-Type": "application/toml", **AUTH},
    )
    assert error(bad, 400)[0].startswith("body is not UTF-8")


def test_oversized_bodies_are_refused_by_length_and_while_read(client: TestClient) -> None:
    message, _ = error(post_toml(client, "#" * 5000, **AUTH), 413)
    assert message == "body of 5000 bytes is above the limit of 4096"

    def chunks() -> Iterator[bytes]:
        yield from (b"#" * 1000 for _ in range(10))  # chunked: no Content-Length to refuse up front

    answer = client.post(
        "/api/campaigns", content=chunks(), headers={"Content-Type": "application/toml", **AUTH}
    )
    assert error(answer, 413)[0] == "body above the limit of 4096 bytes"
    assert error(post_toml(client, CAMPAIGN, **AUTH, **{"Content-Length": "12x"}), 400)[1] == "Content-Length"


def test_the_json_form_loads_to_the_same_campaign_as_the_toml(tmp_path: Path) -> None:
    from_toml = campaign_from_toml(CAMPAIGN, tmp_path / "c.toml")
    from_json = campaign_from_mapping(json.loads(json.dumps(tomllib.loads(CAMPAIGN))), tmp_path / "c.json")
    assert from_json.steps == from_toml.steps and from_json.smsc == from_toml.smsc
    assert from_json.campaign == from_toml.campaign and from_json.targets == from_toml.targets


def test_a_campaign_created_as_json_is_listed_steered_and_reported(client: TestClient) -> None:
    raw = tomllib.loads(CAMPAIGN)
    created = client.post("/api/campaigns", json=raw, headers=AUTH)
    assert created.status_code == 201, created.text
    assert created.json() == {"campaign": "api", "status": "started", "url": "/api/campaigns/api"}
    assert error(client.post("/api/campaigns", json=raw, headers=AUTH), 409)[0].endswith(
        "already running in this server"
    )
    status = client.get("/api/campaigns/api").json()
    assert status["state"] == "running" and status["status"] == "running"
    assert status["runner"]["alive"] and status["live"]["jobs_total"] == 120
    assert [c["campaign"] for c in client.get("/api/campaigns").json()["campaigns"]] == ["api"]
    board = client.get("/api/dashboard").json()["campaigns"][0]
    assert board["progress"] == {"done": 0, "total": 120} and board["summary"]["pending"] == 120

    assert error(client.post("/api/campaigns/api/stop", headers=AUTH), 404)[0].startswith(
        "no such action 'stop'"
    )
    assert error(client.post("/api/campaigns/api/pause", json={"now": True}, headers=AUTH), 422) == (
        "unknown key (this route takes no body)",
        "now",
    )
    assert client.post("/api/campaigns/api/pause", headers=AUTH).json()["state"] == "paused"
    assert client.post("/api/campaigns/api/resume", json={}, headers=AUTH).json()["state"] == "running"
    assert client.post("/api/campaigns/api/cancel", headers=AUTH).json()["state"] == "cancelled"
    message = error(client.post("/api/campaigns/api/resume", headers=AUTH), 409)[0]
    assert message == "campaign api is cancelled: cannot resume"

    report = client.get("/api/campaigns/api/report").json()
    assert report["campaign"] == "api" and report["state"] == "cancelled"
    csv_text = client.get("/api/campaigns/api/report?format=csv")
    assert csv_text.headers["content-type"] == "text/csv; charset=utf-8"
    assert csv_text.text.startswith("iccid,msisdn,step,tar,state,")
    assert error(client.get("/api/campaigns/api/report?format=xml"), 422) == (
        "expected json or csv, got 'xml'",
        "format",
    )
    card = client.get("/api/cards/491700000000").json()  # the fleet's first card, by MSISDN
    assert card["iccid"].startswith("89") and card["keysets"] and "kic" not in card["keysets"][0]
    assert error(client.get(f"/api/campaigns/api/cards/{card['iccid']}x"), 404)


# --------------------------------------------------------------------------- cards


def test_cards_import_is_all_or_nothing_and_keys_need_token_and_asking(client: TestClient) -> None:
    headers = {"Content-Type": "text/csv", **AUTH}
    bad = CSV + CSV.splitlines()[1].replace("000102030405060708090a0b0c0d0e0f", "0001") + "\n"
    message, field = error(client.post("/api/cards", content=bad, headers=headers), 422)
    assert field == "request body:4:kic" and "0001" not in message  # the key value is never repeated
    assert error(client.get("/api/cards/8988211000000000011"), 404)  # nothing was imported
    assert error(client.post("/api/cards", content="", headers=headers), 422)[0].startswith("empty file")
    answer = client.post("/api/cards", content=CSV, headers=headers)
    assert answer.status_code == 200 and answer.json()["added"] >= 1
    again = client.post("/api/cards", content=CSV, headers=headers).json()
    assert again == {"added": 0, "updated": answer.json()["added"]}
    other = CSV.replace("8988211000000000011", "8988211000000000029")
    message, field = error(client.post("/api/cards", content=other, headers=headers), 422)
    assert "belongs to card 8988211000000000011" in message and field == "request body:msisdn"
    assert error(
        client.post("/api/cards", content=CSV, headers={"Content-Type": "application/json", **AUTH}), 415
    )

    card = client.get("/api/cards/8988211000000000011").json()
    assert card["tags"] == ["pcsc"] and [k["kvn"] for k in card["keysets"]] == [1, 2]
    assert all("kic" not in k and "kid" not in k for k in card["keysets"])
    assert card["jobs"] == [] and card["audit"] == []
    assert error(client.get("/api/cards/8988211000000000011?with_keys=true"), 401)
    assert (
        error(client.get("/api/cards/8988211000000000011?with_keys=yes", headers=AUTH), 422)[1] == "with_keys"
    )
    keyed = client.get("/api/cards/8988211000000000011?with_keys=true", headers=AUTH).json()
    assert keyed["keysets"][0]["kic"] == "000102030405060708090a0b0c0d0e0f"


# --------------------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "ota-server: --smsc: give --smsc HOST:PORT, or --network HANDSET.toml for an embedded one"),
        (
            ["--smsc", "127.0.0.1:1", "--network", "h.toml"],
            "ota-server: serve: --smsc or --network, not both",
        ),
        (
            ["--smsc", "127.0.0.1:1", "--token-file", "short"],
            "ota-server: --token-file: short: expected a token",
        ),
        (
            ["--smsc", "127.0.0.1:1", "--token-file", "missing"],
            "ota-server: --token-file: missing: No such file",
        ),
        (["--http", "localhost"], "expected HOST:PORT"),
        (["--smsc", "127.0.0.1:1", "--max-body", "0"], "ota-server: --max-body: expected a positive number"),
    ],
)
def test_serve_usage_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "short").write_text("abc\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ota_server.cli",
            "serve",
            "--db",
            str(tmp_path / "db"),
            "--http",
            "127.0.0.1:0",
            *args,
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OTA_SERVER_TOKEN": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_check_the_runner_makes_before_it_starts_is_the_answer(client: TestClient) -> None:
    """No card of the (empty) store matches: the runner refuses before binding; 422, nothing hosted."""
    text = CAMPAIGN.replace("fleet = true", "all = true\nfleet = false")
    assert error(post_toml(client, text, **AUTH), 422) == ("no card of the inventory matches", "targets")
    assert client.get("/api/campaigns").json() == {"campaigns": []}
    platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
    assert platform.hosted == {}

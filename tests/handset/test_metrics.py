"""``handset serve --metrics HOST:PORT``: Prometheus text on a real loopback port, bounded, stopped
with the service."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "configs" / "cards" / "fleet-template.toml"


@pytest.mark.asyncio
async def test_metrics_endpoint_serves_the_smsc_counters_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "handset.toml"
    config.write_text(
        '[smsc]\nhost = "127.0.0.1"\nport = 0\nsystem_id = "HANDSET"\n'
        '[[smsc.esmes]]\nsystem_id = "ota"\npassword = "secret"\naddresses = ["12345"]\n'
        f'[fleet]\nseed = "m"\ncount = 3\ncard_template = "{TEMPLATE.as_posix()}"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "handset.cli", "serve", "--config", str(config), "--metrics", "127.0.0.1:0",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            assert "SMSC listening on 127.0.0.1:" in (await proc.stdout.readline()).decode()
            line = (await proc.stdout.readline()).decode()
            match = re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", line)
            assert match, line
            async with httpx.AsyncClient() as client:
                answer = await client.get(match.group(1))
                assert answer.status_code == 200
                assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
                assert "handset_mt_queue_depth 0\n" in answer.text
                assert 'handset_deliver_sm_total{result="sent"} 0\n' in answer.text
                assert (await client.post(match.group(1))).status_code == 405
                assert (await client.get(match.group(1).replace("/metrics", "/other"))).status_code == 404
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_a_bad_metrics_address_is_a_usage_error() -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "handset.cli", "serve", "--config", "x.toml", "--metrics", "nowhere"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "expected HOST:PORT" in done.stderr and "Traceback" not in done.stderr

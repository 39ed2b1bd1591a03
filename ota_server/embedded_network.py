"""The embedded network: ``handset serve`` as a child process, reached over real SMPP.

Clauses: house-style §1 (ota_server meets the network only over SMPP: the handset is never
imported), docs/handset.md (``--ready-file``, ``--report-file``, ``--exit-with-parent``).

Its first stdout line names the port; its stdout/stderr are drained into the log; on exit it gets
SIGTERM and writes its report of every card, from which :func:`ota_server.report.verify_jobs`
proves the run (lost = duplicated = mismatches = 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import sys
from pathlib import Path
from typing import Any

from ota_protocols.errors import TransportError

log = logging.getLogger(__name__)

_PORT_LINE = re.compile(r"listening on ([0-9.]+):(\d+)")


class CampaignFailed(TransportError):
    """The campaign could not run (SMSC unreachable, network did not start, store failed): exit 1."""


class EmbeddedNetwork:
    """``handset serve`` as a child process (never imported: ota_server meets it over SMPP).

    The child runs with ``--exit-with-parent`` and a stdin pipe whose write end only this
    process holds: if the server dies, even by SIGKILL, the child reads EOF and stops.
    ``pcap`` (``campaign run --pcap``) is passed on as ``handset serve --pcap``.
    """

    def __init__(self, handset_config: Path, workdir: Path, *, pcap: Path | None = None) -> None:
        self.handset_config = handset_config
        self.pcap = pcap
        self.report_file = workdir / "handset-report.json"
        self.ready_file = workdir / "handset-ready"
        self._proc: asyncio.subprocess.Process | None = None
        self._drains: list[asyncio.Task[None]] = []
        self.port: int | None = None

    async def start(self, timeout_s: float = 60.0) -> int:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "handset.cli",
            "serve",
            "--config",
            str(self.handset_config),
            "--port",
            "0",
            "--ready-file",
            str(self.ready_file),
            "--report-file",
            str(self.report_file),
            "--exit-with-parent",
            *(["--pcap", str(Path(self.pcap).resolve())] if self.pcap is not None else []),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        stderr_tail: list[str] = []
        self._drains.append(asyncio.create_task(self._drain(self._proc.stderr, stderr_tail)))
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    line = await self._proc.stdout.readline()
                    if not line:
                        await self._proc.wait()
                        await asyncio.sleep(0)  # let the stderr drain catch up
                        tail = " | ".join(stderr_tail[-3:]) or "no output"
                        raise CampaignFailed(
                            f"embedded network ({self.handset_config}) exited with status "
                            f"{self._proc.returncode} before listening: {tail}"
                        )
                    text = line.decode("utf-8", "replace").strip()
                    log.info("network: %s", text)
                    match = _PORT_LINE.search(text)
                    if match:
                        self.port = int(match.group(2))
                        break
        except TimeoutError:
            await self.stop()
            raise CampaignFailed(f"embedded network did not report its port within {timeout_s:g} s") from None
        self._drains.append(asyncio.create_task(self._drain(self._proc.stdout, None)))
        return self.port

    @staticmethod
    async def _drain(stream: asyncio.StreamReader, tail: list[str] | None) -> None:
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").rstrip()
            if tail is not None:
                tail.append(text)
                del tail[:-20]
            log.debug("network: %s", text)

    async def stop(self, timeout_s: float = 15.0) -> dict[str, Any] | None:
        """SIGTERM, bounded wait (then SIGKILL), and the report file if the network wrote one."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout_s):
                    await proc.wait()
            except TimeoutError:
                log.warning("embedded network ignored SIGTERM for %g s: killing it", timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for task in self._drains:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(2.0):
                    await task
            task.cancel()
        self._proc = None
        try:
            return json.loads(self.report_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("no usable network report at %s: %s", self.report_file, exc)
            return None

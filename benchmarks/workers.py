"""Workers benchmark: OTA transactions/s of 1, 2 and 4 PostgreSQL-backed workers against one SMSC,
and the server CPU-µs per transaction of each backend (SQLite single process vs PostgreSQL workers).

    python -m benchmarks.workers [--cards 4000] [--workers 1 2 4] [--binds 4]

Every run is a fresh network (``handset serve`` in a child process, ``--cards`` fleet cards, one
update_binary action each, so one transaction = one script, its PoR and the counter reconciled in
the store) and a fresh store. The baseline is ``ota-server campaign run --smsc --db FILE`` (SQLite,
one process); then N ``ota-server campaign run --worker --db postgresql://...`` processes on a
throwaway cluster (started here on 127.0.0.1, as the tests do). ``[pacing] binds`` is ``--binds``
in every run and the workers split the bind slots (``--binds`` / N each), so the SMSC sees the same
number of binds whatever N.

Measured over the flow (first to last history row in the store, wall clock), from /proc every 50 ms:
transactions/s; CPU-µs per transaction of the OTA server processes (all workers together), of the
PostgreSQL server (postmaster and backends) and of the network (SMSC, phones, SIMs). The ratio
column is transactions/s against the SQLite baseline of the same run. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.e2e import ACTION, CAMPAIGN, HANDSET, TEMPLATE, _cpu_s

ROOT = Path(__file__).resolve().parents[1]


def _tree_cpu_s(pid: int) -> float:
    """utime + stime of a process and its reaped children (cutime + cstime) and its live children."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    own = sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(k) for k in f.read().split()]
    except OSError:
        kids = []
    return own + sum(_cpu_s(f"/proc/{kid}/stat") for kid in kids)


class Sampler(threading.Thread):
    """(time, CPU s) of each watched group of processes, every 50 ms, until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.groups: dict[str, list[int]] = {}
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._last: dict[int, float] = {}
        self._halt = threading.Event()

    def watch(self, group: str, pid: int) -> None:
        self.groups.setdefault(group, []).append(pid)

    def _cpu(self, pid: int, tree: bool) -> float:
        value = _tree_cpu_s(pid) if tree else _cpu_s(f"/proc/{pid}/stat")
        if value:  # a process that ended keeps its last reading
            self._last[pid] = value
        return self._last.get(pid, 0.0)

    def run(self) -> None:
        while not self._halt.is_set():
            now = time.time()
            self.samples.append(
                (
                    now,
                    {
                        g: sum(self._cpu(p, g == "postgres") for p in pids)
                        for g, pids in list(self.groups.items())
                    },
                )
            )
            self._halt.wait(0.05)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def between(self, group: str, start: float, end: float) -> float:
        def at(t: float) -> float:
            before = [s[group] for when, s in self.samples if when <= t and group in s]
            return before[-1] if before else 0.0

        return at(end) - at(start)


@dataclass
class Result:
    label: str
    transactions: int
    flow_s: float
    server_cpu_s: float
    db_cpu_s: float
    network_cpu_s: float

    @property
    def tps(self) -> float:
        return self.transactions / self.flow_s if self.flow_s > 0 else 0.0

    def us(self, cpu_s: float) -> float:
        return cpu_s / self.transactions * 1e6 if self.transactions else 0.0


def _start_network(tmp: Path, cards: int, sampler: Sampler) -> tuple[subprocess.Popen[bytes], int]:
    handset = tmp / "handset.toml"
    handset.write_text(
        HANDSET.format(count=cards, template=TEMPLATE.as_posix(), issued="issued_action_counter = 0")
    )
    ready = tmp / "handset.port"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "handset.cli", "--log-level", "ERROR", "serve", "--config", str(handset)),
            *("--port", "0", "--ready-file", str(ready)),
        ],
        stdout=subprocess.DEVNULL,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 120.0
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("handset serve did not start")
        time.sleep(0.05)
    sampler.watch("network", proc.pid)
    return proc, int(ready.read_text())


def _campaign(tmp: Path, binds: int) -> Path:
    text = CAMPAIGN.format(handset=(tmp / "handset.toml").as_posix(), window=64, spi="1639") + ACTION
    text = text.replace("window = 64\n", "").replace(
        "[targets]", f"[pacing]\nbinds = {binds}\nwindow = 64\n[targets]"
    )
    text = text.replace('name = "bench"', 'name = "bench"\nconcurrency = 512')
    path = tmp / "c.toml"
    path.write_text(text)
    return path


def _flow(db: str) -> tuple[int, float]:
    """Confirmed jobs, and the seconds from the first to the last history row."""
    from ota_server.card_store import CardStore

    store = CardStore(db)
    try:
        confirmed = store.job_counts("bench").get("done", 0)
        span = store.backend.execute("SELECT MIN(at), MAX(at) FROM history").fetchone()
    finally:
        store.close()
    return confirmed, float(span[1] - span[0]) if span[0] is not None else 0.0


def one_run(
    label: str, tmp: Path, cards: int, binds: int, db: str, workers: int, pg_pid: int | None
) -> Result:
    tmp.mkdir(parents=True, exist_ok=True)
    sampler = Sampler()
    if pg_pid is not None:
        sampler.watch("postgres", pg_pid)
    network, port = _start_network(tmp, cards, sampler)
    campaign = _campaign(tmp, binds)
    sampler.start()
    procs = []
    try:
        for _ in range(max(1, workers)):
            args = [sys.executable, "-m", "ota_server.cli", "campaign", "run", str(campaign)]
            args += ["--smsc", f"127.0.0.1:{port}", "--db", db, "--log-level", "ERROR"]
            if workers:
                args += ["--worker", "--binds", str(max(1, binds // workers))]
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp)
            sampler.watch("server", proc.pid)
            procs.append(proc)
        for proc in procs:
            _, err = proc.communicate(timeout=900)
            if proc.returncode != 0:
                raise RuntimeError(f"{label}: ota-server exited {proc.returncode}: {err.decode()[-500:]}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        network.send_signal(signal.SIGTERM)
        network.wait(timeout=120)
        sampler.stop()
    confirmed, span = _flow(db)
    history_start = _first_at(db)
    end = history_start + span
    return Result(
        label,
        confirmed,
        span,
        sampler.between("server", history_start, end),
        sampler.between("postgres", history_start, end) if pg_pid is not None else 0.0,
        sampler.between("network", history_start, end),
    )


def _first_at(db: str) -> float:
    from ota_server.card_store import CardStore

    store = CardStore(db)
    try:
        return float(store.backend.execute("SELECT MIN(at) FROM history").fetchone()[0])
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.workers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--cards", type=int, default=4000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--binds", type=int, default=4, help="[pacing] binds of every run (default 4)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from tests.support.postgres import available, start_cluster

    if not available():
        print("benchmarks.workers: PostgreSQL and psycopg are needed (Debian postgresql, psycopg[binary])")
        return 2
    import psycopg

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmpdir:
        tmp = Path(tmpdir)
        cluster_gen = start_cluster()
        cluster = next(cluster_gen)
        try:
            print(
                f"{args.cards} cards, 1 action each, [pacing] binds = {args.binds}, {os.cpu_count()} cores",
                flush=True,
            )
            results.append(
                one_run(
                    "SQLite, 1 process",
                    tmp / "sqlite",
                    args.cards,
                    args.binds,
                    str(tmp / "ota.sqlite"),
                    0,
                    None,
                )
            )
            print(f"  done: {results[-1].label}", flush=True)
            for n in args.workers:
                url = cluster.new_database()
                label = f"PostgreSQL, {n} worker{'s' if n > 1 else ''}"
                results.append(
                    one_run(label, tmp / f"pg{n}", args.cards, args.binds, url, n, cluster.postmaster_pid())
                )
                print(f"  done: {label}", flush=True)
                with psycopg.connect(cluster.url(), autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE {url.rsplit('/', 1)[1]}")
        finally:
            with_exit = cluster_gen.close
            with_exit()
    base = results[0].tps or 1.0
    print()
    print(
        f"{'run':<24} {'tx':>6} {'flow s':>7} {'tx/s':>8} {'ratio':>6} "
        f"{'server µs/tx':>13} {'db µs/tx':>9} {'network µs/tx':>14}"
    )
    for r in results:
        print(
            f"{r.label:<24} {r.transactions:>6} {r.flow_s:>7.2f} {r.tps:>8.0f} {r.tps / base:>6.2f} "
            f"{r.us(r.server_cpu_s):>13.0f} {r.us(r.db_cpu_s):>9.0f} {r.us(r.network_cpu_s):>14.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``ota-server``: the OTA platform's command line.

* ``ota-server packet encode-command|decode-command|encode-response|decode-response``
  (JSON on stdin, JSON on stdout; packet_tool.py).
* ``ota-server campaign run CAMPAIGN.toml [--smsc HOST:PORT] [--report PATH] [--db PATH]
  [--seed N] [--log-level L] [--pcap FILE]`` (service.py; format in docs/campaigns.md). ``--pcap``
  makes the embedded network capture SMPP and SIM APDUs (``handset serve --pcap``); refused with
  ``--smsc`` (exit 2): that network is not ours to capture.

* ``ota-server campaign pause|resume|cancel|status NAME [--db PATH]``: the campaigns row a running
  ``campaign run`` polls (docs/campaigns.md §1.1).
* ``ota-server cards import FILE.csv [--db PATH]`` (all or nothing) and ``ota-server cards export
  [--db PATH] [--with-keys]`` (inventory.py).
* ``ota-server report CAMPAIGN [--db PATH] [--json PATH] [--csv PATH] [--plot PNG] [--audit ICCID]``
  (campaign_report.py).

Exit codes: 0 success (a campaign that ran, even with partial cards), 1 runtime
failure (one line, e.g. SMSC unreachable), 2 usage, config or input error (one
line on stderr naming the file and key). Logging is configured here and only here.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ota_protocols.errors import ConfigError, OtaSimError, StoreError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _packet(args: argparse.Namespace) -> int:
    from ota_server.packet_tool import COMMANDS

    prog = f"ota-server packet {args.packet_command}"
    text = sys.stdin.read()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        print(
            f"{prog}: stdin: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", file=sys.stderr
        )
        return EXIT_USAGE
    try:
        result = COMMANDS[args.packet_command](raw)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return EXIT_OK


def _smsc_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # smpplib logs whole PDUs (the bind password included) at DEBUG under "smpp.Client.<id>", and
    # warns on every close of a half-open socket: our own per-PDU lines and errors are enough.
    logging.getLogger("smpp").setLevel(logging.ERROR)
    # Without a terminal the progress is a log line every few seconds: visible unless ERROR.
    if logging.getLogger().level <= logging.WARNING:
        logging.getLogger("ota_server.progress").setLevel(logging.INFO)


def _campaign_run(args: argparse.Namespace) -> int:
    import asyncio

    from ota_server.config import load_campaign
    from ota_server.service import CampaignRunner, print_summary

    if args.pcap is not None and args.smsc is not None:
        print("ota-server: --pcap captures the embedded network only; not with --smsc", file=sys.stderr)
        return EXIT_USAGE
    _configure_logging(args.log_level)
    config = load_campaign(args.campaign)
    runner = CampaignRunner(config, smsc=args.smsc, db_path=args.db, seed=args.seed, pcap=args.pcap)
    report = asyncio.run(runner.run())
    if args.report is not None:
        try:
            args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"ota-server: --report {args.report}: {exc.strerror}", file=sys.stderr)
            return EXIT_FAILURE
    print_summary(report)
    return EXIT_OK


DEFAULT_DB = Path("ota-server.sqlite")


def _open_store(path: Path, *, must_exist: bool = True) -> Any:
    from ota_server.card_store import CardStore

    if must_exist and not path.exists():
        raise ConfigError("--db", f"{path}: no such database (give --db PATH of the campaign run)")
    return CardStore(path)


def _campaign_control(args: argparse.Namespace) -> int:
    import time

    from ota_server.campaign_report import build_report

    store = _open_store(args.db)
    try:
        row = store.campaign(args.name)
        if row is None:
            known = ", ".join(r.name for r in store.campaigns()) or "none"
            print(f"ota-server: {args.db}: no campaign {args.name!r} (known: {known})", file=sys.stderr)
            return EXIT_USAGE
        command = args.campaign_command
        if command != "status":
            wanted = {"pause": "paused", "resume": "running", "cancel": "cancelled"}[command]
            if row.state in ("cancelled", "finished") and wanted != row.state:
                print(f"ota-server: campaign {args.name} is {row.state}: cannot {command}", file=sys.stderr)
                return EXIT_USAGE
            store.set_campaign_state(args.name, wanted, at=time.time())
            alive = row.runner_pid is not None and row.heartbeat_at is not None
            alive = alive and time.time() - row.heartbeat_at < 5.0  # type: ignore[operator]
            print(f"campaign {args.name}: {wanted}" + ("" if alive else " (no runner active)"))
            if command == "resume" and not alive:
                source = row.source or "CAMPAIGN.toml"
                print(f"continue it with: ota-server campaign run {source} --db {args.db} --smsc HOST:PORT")
            return EXIT_OK
        report = build_report(store, args.name)
        assert report is not None
        s = report["summary"]
        jobs = store.job_counts(args.name)
        print(
            f"campaign {args.name}: {report['state']}; cards {s['cards']}: confirmed {s['confirmed']}, "
            f"partial {s['partial']}, failed {s['failed']}, pending {s['pending']}, "
            f"cancelled {s['cancelled']}, skipped {s['skipped']}; jobs by state: "
            + ", ".join(f"{k} {v}" for k, v in sorted(jobs.items()))
        )
        return EXIT_OK
    finally:
        store.close()


def _cards_import(args: argparse.Namespace) -> int:
    from ota_server.inventory import parse_inventory

    cards = parse_inventory(args.file)  # every row checked before anything is written
    store = _open_store(args.db, must_exist=False)
    try:
        owners = store.msisdn_owners()
        for card, _ in cards:
            owner = owners.get(card.msisdn)
            if owner is not None and owner != card.iccid:
                raise ConfigError("", f"MSISDN {card.msisdn} belongs to card {owner} in {args.db}",
                                  source=f"{args.file}:msisdn")  # fmt: skip
        added, updated = store.upsert_inventory(cards)
    finally:
        store.close()
    print(f"{args.file}: {added} cards added, {updated} updated ({args.db})")
    return EXIT_OK


def _cards_export(args: argparse.Namespace) -> int:
    from ota_server.inventory import export_rows

    store = _open_store(args.db)
    try:
        sys.stdout.write(export_rows(store.cards(), store.keysets(), with_keys=args.with_keys))
    finally:
        store.close()
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from ota_server.campaign_report import audit_lines, build_report, cards_csv, plot, print_report

    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("ota-server: --plot needs matplotlib: pip install 'ota-sim[plot]'", file=sys.stderr)
            return EXIT_USAGE
    store = _open_store(args.db)
    try:
        report = build_report(store, args.campaign)
        if report is None:
            known = ", ".join(r.name for r in store.campaigns()) or "none"
            print(f"ota-server: {args.db}: no campaign {args.campaign!r} (known: {known})", file=sys.stderr)
            return EXIT_USAGE
        if args.audit is not None:
            lines = audit_lines(store, args.campaign, args.audit)
            if not lines:
                print(
                    f"ota-server: campaign {args.campaign}: no message for card {args.audit}", file=sys.stderr
                )
                return EXIT_USAGE
            print("\n".join(lines))
            return EXIT_OK
        print_report(report)
        try:
            if args.json is not None:
                args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            if args.csv is not None:
                args.csv.write_text(cards_csv(report), encoding="utf-8")
            if args.plot is not None:
                plot(store, args.campaign, report, str(args.plot))
                print(f"plot: {args.plot}")
        except OSError as exc:
            print(f"ota-server: {exc.filename}: {exc.strerror}", file=sys.stderr)
            return EXIT_FAILURE
        return EXIT_OK
    finally:
        store.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ota-server", description="OTA platform: 03.48 campaigns over SMPP."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    packet = sub.add_parser("packet", help="build or decode secured packets (JSON on stdin, JSON on stdout)")
    packet.add_argument(
        "packet_command", choices=["encode-command", "decode-command", "encode-response", "decode-response"]
    )
    packet.set_defaults(handler=_packet)

    campaign = sub.add_parser("campaign", help="run OTA campaigns")
    campaign_sub = campaign.add_subparsers(dest="campaign_command", required=True)
    run = campaign_sub.add_parser(
        "run",
        help="run a campaign file to its end",
        description="Run a campaign: without --smsc an embedded network (handset serve) is started "
        "from the campaign's [network].handset_config and its cards are verified at the end.",
    )
    run.add_argument("campaign", type=Path, help="campaign TOML file (docs/campaigns.md)")
    run.add_argument(
        "--smsc", type=_smsc_address, metavar="HOST:PORT", help="use this SMSC, no embedded network"
    )
    run.add_argument("--report", type=Path, metavar="PATH", help="write the JSON report here")
    run.add_argument(
        "--db",
        type=Path,
        metavar="PATH",
        help="SQLite card store (default: a fresh temporary one with the embedded network, "
        "./ota-server.sqlite with --smsc)",
    )
    run.add_argument("--seed", type=int, default=1, help="seed of the concatenation references (default 1)")
    run.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default WARNING",
    )
    run.add_argument(
        "--pcap",
        type=Path,
        metavar="FILE",
        help="embedded network only: write its SMPP and SIM APDU traffic to this pcap file (Wireshark)",
    )
    run.set_defaults(handler=_campaign_run)
    for command, text in (
        ("pause", "stop new sends of a running campaign (messages out still settle)"),
        ("resume", "let a paused campaign send again"),
        ("cancel", "end the campaign: open jobs end cancelled once no script of theirs can still run"),
        ("status", "print the campaign's state and counts"),
    ):
        control = campaign_sub.add_parser(command, help=text, description=text)
        control.add_argument("name", help="the campaign's [campaign] name")
        control.add_argument(
            "--db", type=Path, default=DEFAULT_DB, metavar="PATH", help=f"default {DEFAULT_DB}"
        )
        control.set_defaults(handler=_campaign_control)

    cards = sub.add_parser("cards", help="card inventory: CSV import and export")
    cards_sub = cards.add_subparsers(dest="cards_command", required=True)
    imp = cards_sub.add_parser(
        "import",
        help="import cards and key sets (all or nothing)",
        description="CSV header: iccid,imsi,msisdn,kvn,kic_algorithm,kic,kid_algorithm,kid,tags - "
        "one row per key set, tags separated by ';'. A bad row imports nothing "
        "(exit 2, FILE:LINE:COLUMN: problem).",
    )
    imp.add_argument("file", type=Path)
    imp.add_argument("--db", type=Path, default=DEFAULT_DB, metavar="PATH", help=f"default {DEFAULT_DB}")
    imp.set_defaults(handler=_cards_import)
    exp = cards_sub.add_parser("export", help="write the inventory as CSV on stdout (keys masked)")
    exp.add_argument("--db", type=Path, default=DEFAULT_DB, metavar="PATH", help=f"default {DEFAULT_DB}")
    exp.add_argument("--with-keys", action="store_true", help="write the key hex instead of '*'")
    exp.set_defaults(handler=_cards_export)

    report = sub.add_parser(
        "report",
        help="summary and failure breakdown of a campaign from the database",
        description="Summary, failures by PoR status and by last status word; JSON / CSV per card, a plot, "
        "or one card's audit trail.",
    )
    report.add_argument("campaign", help="the campaign's [campaign] name")
    report.add_argument("--db", type=Path, default=DEFAULT_DB, metavar="PATH", help=f"default {DEFAULT_DB}")
    report.add_argument("--json", type=Path, metavar="PATH", help="write the report (every card) as JSON")
    report.add_argument("--csv", type=Path, metavar="PATH", help="write one CSV line per card and step")
    report.add_argument("--plot", type=Path, metavar="PNG", help="draw progress over time (needs matplotlib)")
    report.add_argument("--audit", metavar="ICCID", help="print this card's messages instead")
    report.set_defaults(handler=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"ota-server: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"ota-server: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OtaSimError as exc:
        print(f"ota-server: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("ota-server: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``ota-server``: the OTA platform's command line.

* ``ota-server packet encode-command|decode-command|encode-response|decode-response``
  (JSON on stdin, JSON on stdout; packet_tool.py). ``packet COMMAND --help`` lists its JSON keys.
* ``ota-server campaign run CAMPAIGN.toml [--smsc HOST:PORT] [--report PATH] [--db PATH]
  [--seed N] [--pcap FILE] [--fail-on failed,partial]`` (service.py; format in docs/campaigns.md).
  ``--pcap`` makes the embedded network capture SMPP and SIM APDUs (``handset serve --pcap``);
  refused with ``--smsc`` (exit 2): that network is not ours to capture. ``--report`` is checked
  before the run. ``--fail-on``: exit 1, after the summary and the report, when any card ended in
  one of those states (for CI).
* ``ota-server campaign check CAMPAIGN.toml [--db PATH]``: load the campaign and its network config
  and resolve the targets, without running anything: ``ok: campaign NAME, N steps, M target cards``.
* ``ota-server campaign pause|resume|cancel|status NAME [--db PATH]``: the campaigns row a running
  ``campaign run`` polls (docs/campaigns.md §1.1). ``status`` reads the lease: "running (pid N on
  host H, heartbeat 0.3 s ago)" only while the runner lives, else "interrupted: ..." and the command
  that continues it; ``status --json`` prints the same as JSON.
* ``ota-server cards import FILE.csv [--db PATH]`` (all or nothing) and ``ota-server cards export
  [--db PATH] [--with-keys]`` (inventory.py).
* ``ota-server serve [--db PATH] [--http HOST:PORT] [--smsc HOST:PORT | --network HANDSET.toml]
  [--token-file PATH] [--max-body BYTES] [--campaign-dir DIR]``: the platform as a service, its
  HTTP JSON API, /metrics and dashboard (ota_server/http/, docs/http-api.md).
* ``ota-server report CAMPAIGN [--db PATH] [--json PATH] [--csv PATH] [--plot PNG] [--audit ICCID]``
  (campaign_report.py); every output and the plot format are checked before the report prints.

``--version`` and ``--log-level DEBUG|INFO|WARNING|ERROR`` (default WARNING) are accepted before
or after any subcommand, as by ``handset``, ``sim-emulator`` and ``ota-lab``.

Exit codes: 0 success (a campaign that ran, even with partial cards, unless ``--fail-on``), 1
runtime failure (one line, e.g. SMSC unreachable), 2 usage, config or input error (one line on
stderr naming the file and key). Logging is configured here and only here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from ota_protocols.cli_options import add_log_level
from ota_protocols.errors import ConfigError, OtaSimError, StoreError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DEFAULT_LOG_LEVEL = "WARNING"
FAIL_ON_STATES = ("failed", "partial")  # a card's overall state, as the summary counts it
DEFAULT_DB = Path("ota-server.sqlite")


# --------------------------------------------------------------------------- packet


def _packet(args: argparse.Namespace) -> int:
    from ota_server.packet_tool import COMMANDS, read_json

    prog = f"ota-server packet {args.packet_command}"
    try:
        try:
            text = sys.stdin.read()
        except UnicodeDecodeError:
            raise ConfigError("stdin", "not UTF-8 text (expected one JSON object)") from None
        result = COMMANDS[args.packet_command](read_json(text))
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return EXIT_OK


# --------------------------------------------------------------------------- campaign


def _smsc_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _fail_on_states(text: str) -> list[str]:
    states = [s.strip().lower() for s in text.split(",") if s.strip()]
    bad = [s for s in states if s not in FAIL_ON_STATES]
    if bad or not states:
        raise argparse.ArgumentTypeError(
            f"expected {' or '.join(FAIL_ON_STATES)} (a comma list, or the option repeated), got {text!r}"
        )
    return states


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

    from ota_server.campaign_report import check_output_path
    from ota_server.config import load_campaign
    from ota_server.service import CampaignRunner, print_summary

    if args.pcap is not None and args.smsc is not None:
        print("ota-server: --pcap captures the embedded network only; not with --smsc", file=sys.stderr)
        return EXIT_USAGE
    # Outputs first: a campaign that ran for an hour must not end in "no such directory".
    if args.report is not None:
        check_output_path(args.report, option="--report")
    if args.pcap is not None:
        check_output_path(args.pcap, option="--pcap")
    config = load_campaign(args.campaign)
    runner: CampaignRunner
    if args.worker:
        from ota_server.store.workers import WORKER_TTL_S
        from ota_server.worker import WorkerRunner

        if args.pcap is not None:
            print("ota-server: --pcap captures the embedded network only; not with --worker", file=sys.stderr)
            return EXIT_USAGE
        runner = WorkerRunner(
            config,
            smsc=args.smsc,
            db_path=args.db,
            seed=args.seed,
            binds=args.binds,
            batch=args.batch,
            ttl_s=args.worker_ttl or WORKER_TTL_S,
        )
    else:
        if args.binds != 1 or args.batch or args.worker_ttl is not None:
            print("ota-server: --binds, --batch and --worker-ttl go with --worker", file=sys.stderr)
            return EXIT_USAGE
        runner = CampaignRunner(config, smsc=args.smsc, db_path=args.db, seed=args.seed, pcap=args.pcap)
    report = asyncio.run(runner.run())
    print_summary(report)
    if args.report is not None:
        try:
            args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"ota-server: --report {args.report}: {exc.strerror}", file=sys.stderr)
            return EXIT_FAILURE
    if args.fail_on:
        summary = report["summary"]
        wanted = dict.fromkeys(args.fail_on)  # in the order given, once each
        ended = [f"{summary[state]} {state}" for state in wanted if summary.get(state, 0)]
        if ended:
            cards = "card" if summary["cards"] == 1 else "cards"
            print(
                f"ota-server: --fail-on {','.join(wanted)}: {', '.join(ended)} of {summary['cards']} {cards}",
                file=sys.stderr,
            )
            return EXIT_FAILURE
    return EXIT_OK


def _campaign_check(args: argparse.Namespace) -> int:
    """Everything ``campaign run`` checks before it binds, and nothing it does after."""
    from ota_server.config import load_campaign, load_network_inventory
    from ota_server.engine.job_slots import build_slots
    from ota_server.engine.records import StoreSnapshot, TargetCard
    from ota_server.inventory import fleet_cards

    config = load_campaign(args.campaign)
    source = str(config.source)
    inventory = None
    if config.network.handset_config is not None:
        inventory = load_network_inventory(config.network.handset_config)
    if config.smsc.system_id is None and (inventory is None or not inventory.esmes):
        why = "(no [[smsc.esmes]] in the network config)" if inventory is not None else "(no network config)"
        raise ConfigError("smsc.system_id", f"required {why}", source=source)
    store = _open_store(args.db) if args.db is not None else None
    try:
        known = {c.iccid: c for c in store.cards()} if store is not None else {}
        keysets = store.keysets() if store is not None else {}
        if config.targets.fleet:
            assert inventory is not None  # load_campaign: targets.fleet needs [network].handset_config
            # Tags come from the store (cards import), as in campaign run.
            cards = [
                TargetCard(known.get(card.iccid, card), {k.kvn: k for k in keysets_of_card})
                for card, keysets_of_card in fleet_cards(inventory.fleet)
            ]
        elif store is None:
            steps = len(config.steps)
            print(
                f"ok: campaign {config.campaign.name}, {steps} step{'s' if steps != 1 else ''}, "
                "target cards from the card store (give --db PATH to count them)"
            )
            return EXIT_OK
        else:
            cards = [TargetCard(card, keysets.get(card.iccid, {})) for card in known.values()]
    finally:
        if store is not None:
            store.close()
    slots = list(build_slots(config, cards, StoreSnapshot(), issued_counter=None))
    targets = len({slot.card.iccid for slot in slots})
    if not targets:
        raise ConfigError("targets", "no card of the inventory matches", source=source)
    steps = len(config.steps)
    print(
        f"ok: campaign {config.campaign.name}, {steps} step{'s' if steps != 1 else ''}, "
        f"{targets} target card{'s' if targets != 1 else ''}"
    )
    return EXIT_OK


def _open_store(path: Path | str, *, must_exist: bool = True) -> Any:
    from ota_server.card_store import CardStore

    if must_exist and isinstance(path, Path) and not path.exists():
        raise ConfigError("--db", f"{path}: no such database (give --db PATH of the campaign run)")
    return CardStore(path)


def _pid_runs(pid: int) -> bool:
    """Whether ``pid`` runs on this host (signal 0 checks without signalling)."""
    if pid <= 0:  # 0 and negative pids name process groups: never a runner
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    except (OverflowError, OSError):
        return False
    return True


def _campaign_control(args: argparse.Namespace) -> int:
    from ota_server.campaign_report import (
        CARD_STATES,
        LIFECYCLE,
        campaign_status,
        lifecycle_refusal,
        runner_liveness,
        status_document,
    )

    store = _open_store(args.db)
    try:
        row = store.campaign(args.name)
        if row is None:
            known = ", ".join(r.name for r in store.campaigns()) or "none"
            print(f"ota-server: {store.path}: no campaign {args.name!r} (known: {known})", file=sys.stderr)
            return EXIT_USAGE
        now = time.time()
        runner = runner_liveness(row, now=now, host=socket.gethostname(), pid_alive=_pid_runs)
        workers = store.live_workers(args.name)
        status = campaign_status(row, runner, db=store.path, workers=workers)
        command = args.campaign_command
        if command != "status":
            wanted = LIFECYCLE[command]
            refusal = lifecycle_refusal(row, command)
            if refusal is not None:
                print(f"ota-server: {refusal}", file=sys.stderr)
                return EXIT_USAGE
            store.set_campaign_state(args.name, wanted, at=now)
            if workers:
                print(f"campaign {args.name}: {wanted} ({len(workers)} worker(s) read it within a poll)")
            elif runner is not None and runner.alive:
                print(f"campaign {args.name}: {wanted} (runner {runner.describe()})")
            else:
                why = runner.describe() if runner is not None else "no runner"
                print(f"campaign {args.name}: {wanted} ({why})")
                if command == "resume":
                    updated = store.campaign(args.name) or row
                    print(f"continue it with: {campaign_status(updated, None, db=store.path).continue_with}")
            return EXIT_OK
        out = status_document(store, row, status)
        if args.json:
            json.dump(out, sys.stdout, indent=2)
            sys.stdout.write("\n")
            return EXIT_OK
        print(f"campaign {args.name}: {status.text}")
        s = out["cards"]
        counts = ", ".join(f"{k} {s[k]}" for k in CARD_STATES)
        by_state = ", ".join(f"{k} {v}" for k, v in out["jobs"].items()) or "none"
        print(f"  cards {s['cards']}: {counts}; jobs by state: {by_state}")
        return EXIT_OK
    finally:
        store.close()


# --------------------------------------------------------------------------- cards


def _cards_import(args: argparse.Namespace) -> int:
    from ota_server.inventory import import_inventory, parse_inventory

    cards = parse_inventory(args.file)  # every row checked before anything is written
    store = _open_store(args.db, must_exist=False)
    try:
        added, updated = import_inventory(store, cards, str(args.file))
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


# --------------------------------------------------------------------------- report


def _report(args: argparse.Namespace) -> int:
    from ota_server.campaign_report import (
        audit_lines,
        build_report,
        cards_csv,
        check_output_path,
        plot,
        plot_format,
        print_report,
    )

    # Every output (and the plot's format and matplotlib) before the report prints: a bad --plot
    # is one line, not a report followed by a traceback.
    if args.plot is not None:
        plot_format(args.plot)
    for option, path in (("--json", args.json), ("--csv", args.csv)):
        if path is not None:
            check_output_path(path, option=option)
    store = _open_store(args.db)
    try:
        report = build_report(store, args.campaign)
        if report is None:
            known = ", ".join(r.name for r in store.campaigns()) or "none"
            print(
                f"ota-server: {store.path}: no campaign {args.campaign!r} (known: {known})", file=sys.stderr
            )
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


# --------------------------------------------------------------------------- serve


def _http_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (port 0 = any free one), got {text!r}")
    return host.strip("[]"), int(port)


def _serve(args: argparse.Namespace) -> int:
    from ota_server.http.serve import ServeOptions, read_token, run

    if args.smsc is not None and args.network is not None:
        print("ota-server: serve: --smsc or --network, not both", file=sys.stderr)
        return EXIT_USAGE
    if args.max_body < 1:
        raise ConfigError("--max-body", f"expected a positive number of bytes, got {args.max_body}")
    options = ServeOptions(
        db=args.db,
        http=args.http,
        smsc=args.smsc,
        network=args.network,
        token=read_token(args.token_file),
        max_body=args.max_body,
        seed=args.seed,
        campaign_dir=args.campaign_dir,
    )
    return run(options)


# --------------------------------------------------------------------------- parser


def _version() -> str:
    try:
        return metadata.version("ota-sim")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def _common_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """``--version`` and ``--log-level`` on every parser, so both work before or after a
    subcommand. Below the top a missing ``--log-level`` is left out of the namespace
    (``SUPPRESS``), so it does not undo one given before the subcommand."""
    parser.add_argument("--version", action="version", version=f"ota-server {_version()}")
    add_log_level(parser, default=DEFAULT_LOG_LEVEL if top else None, shown_default=DEFAULT_LOG_LEVEL)


def _subcommands(parser: argparse.ArgumentParser, dest: str) -> Any:
    """Required subcommands whose usage and "required" error name the choices, not ``dest``
    (:func:`_name_choices` fills the metavar in once they are added)."""
    return parser.add_subparsers(dest=dest, required=True)


def _name_choices(action: Any) -> None:
    action.metavar = "{" + ",".join(action.choices) + "}"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0: {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text}")
    return value


def _db_value(text: str) -> Path | str:
    """``--db``: a SQLite file path, or a ``postgresql://`` URL (the shared store of many workers)."""
    from ota_server.store.backends import is_url

    return text if is_url(text) else Path(text)


def _db_option(parser: argparse.ArgumentParser, *, default: Path | None = DEFAULT_DB, text: str = "") -> None:
    parser.add_argument(
        "--db",
        type=_db_value,
        default=default,
        metavar="PATH|URL",
        help=(text or f"SQLite card store (default {default})") + "; or postgresql://USER@HOST:PORT/DB",
    )


def build_parser() -> argparse.ArgumentParser:
    from ota_server.packet_tool import COMMANDS, command_help

    parser = argparse.ArgumentParser(
        prog="ota-server", description="OTA platform: 03.48 campaigns over SMPP."
    )
    _common_options(parser, top=True)
    sub = _subcommands(parser, "command")

    packet = sub.add_parser(
        "packet",
        help="build or decode secured packets (JSON on stdin, JSON on stdout)",
        description="One JSON object on stdin, one on stdout; hex read in any case, written in lower case. "
        "'ota-server packet COMMAND --help' lists that command's keys.",
    )
    _common_options(packet)
    packet_sub = _subcommands(packet, "packet_command")
    packet_texts = {
        "encode-command": "seal a command packet (TS 102 225 §5.1): SPI, keys, TAR, CNTR, data",
        "decode-command": "open a command packet, check its checksum, decipher",
        "encode-response": "seal a response packet (PoR, TS 102 225 §5.2)",
        "decode-response": "open a response packet (PoR)",
    }
    for name in COMMANDS:
        command = packet_sub.add_parser(
            name,
            help=packet_texts.get(name, name),
            description=f"{packet_texts.get(name, name)}. JSON {command_help(name)}",
        )
        _common_options(command)
        command.set_defaults(handler=_packet)
    _name_choices(packet_sub)

    campaign = sub.add_parser("campaign", help="run, check and steer OTA campaigns")
    _common_options(campaign)
    campaign_sub = _subcommands(campaign, "campaign_command")
    run = campaign_sub.add_parser(
        "run",
        help="run a campaign file to its end",
        description="Run a campaign: without --smsc an embedded network (handset serve) is started "
        "from the campaign's [network].handset_config and its cards are verified at the end. "
        "Exit 0 when it ran (partial and failed cards included, unless --fail-on), 1 runtime failure, "
        "2 bad arguments or files (checked before anything runs).",
    )
    run.add_argument("campaign", type=Path, help="campaign TOML file (docs/campaigns.md)")
    run.add_argument(
        "--smsc", type=_smsc_address, metavar="HOST:PORT", help="use this SMSC, no embedded network"
    )
    run.add_argument(
        "--report",
        type=Path,
        metavar="PATH",
        help="write the JSON report here (its directory is checked first)",
    )
    _db_option(
        run,
        default=None,
        text="SQLite card store (default: a fresh temporary one with the embedded network; "
        "required with --smsc)",
    )
    run.add_argument("--seed", type=int, default=1, help="seed of the concatenation references (default 1)")
    run.add_argument(
        "--pcap",
        type=Path,
        metavar="FILE",
        help="embedded network only: write its SMPP and SIM APDU traffic to this pcap file (Wireshark)",
    )
    run.add_argument(
        "--fail-on",
        type=_fail_on_states,
        action="extend",
        metavar="STATE[,STATE]",
        help="exit 1 (after the summary and --report) when any card ended in one of these states: "
        f"{', '.join(FAIL_ON_STATES)}; a comma list or repeated (for CI)",
    )
    run.add_argument(
        "--worker",
        action="store_true",
        help="one of many workers of the campaign (any host, same --db and --smsc): claims cards in "
        "batches, takes over a dead worker's cards (docs/campaigns.md §6.7); the report is this worker's",
    )
    run.add_argument(
        "--binds",
        type=_positive_int,
        default=1,
        metavar="N",
        help="--worker: hold at most N of the campaign's [pacing] binds (default 1; a worker holding none "
        "waits as a standby)",
    )
    run.add_argument(
        "--batch",
        type=_positive_int,
        default=0,
        metavar="N",
        help="--worker: cards per claim (default: concurrency)",
    )
    run.add_argument(
        "--worker-ttl",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="--worker: a worker silent this long loses its cards to the others (default 10)",
    )
    _common_options(run)
    run.set_defaults(handler=_campaign_run)

    check = campaign_sub.add_parser(
        "check",
        help="validate a campaign file and its network config without running anything",
        description="Load the campaign and its [network].handset_config, derive the fleet and resolve the "
        "targets (with --db: the store's cards and tags): prints 'ok: campaign NAME, N steps, M target "
        "cards', or exits 2 with one line naming the file and key.",
    )
    check.add_argument("campaign", type=Path, help="campaign TOML file (docs/campaigns.md)")
    _db_option(check, default=None, text="resolve the targets against this card store (read only)")
    _common_options(check)
    check.set_defaults(handler=_campaign_check)

    for name, text in (
        ("pause", "stop new sends of a running campaign (messages out still settle)"),
        ("resume", "let a paused campaign send again"),
        ("cancel", "end the campaign: open jobs end cancelled once no script of theirs can still run"),
        ("status", "print the campaign's state (is its runner alive?) and counts"),
    ):
        control = campaign_sub.add_parser(name, help=text, description=text)
        control.add_argument("name", help="the campaign's [campaign] name")
        _db_option(control)
        if name == "status":
            control.add_argument(
                "--json", action="store_true", help="status, lease and counts as one JSON object on stdout"
            )
        _common_options(control)
        control.set_defaults(handler=_campaign_control)
    _name_choices(campaign_sub)

    cards = sub.add_parser("cards", help="card inventory: CSV import and export")
    _common_options(cards)
    cards_sub = _subcommands(cards, "cards_command")
    imp = cards_sub.add_parser(
        "import",
        help="import cards and key sets (all or nothing)",
        description="CSV header: iccid,imsi,msisdn,kvn,kic_algorithm,kic,kid_algorithm,kid,tags - "
        "one row per key set, tags separated by ';'. A bad row imports nothing "
        "(exit 2, FILE:LINE:COLUMN: problem).",
    )
    imp.add_argument("file", type=Path)
    _db_option(imp)
    _common_options(imp)
    imp.set_defaults(handler=_cards_import)
    exp = cards_sub.add_parser("export", help="write the inventory as CSV on stdout (keys masked)")
    _db_option(exp)
    exp.add_argument("--with-keys", action="store_true", help="write the key hex instead of '*'")
    _common_options(exp)
    exp.set_defaults(handler=_cards_export)
    _name_choices(cards_sub)

    report = sub.add_parser(
        "report",
        help="summary and failure breakdown of a campaign from the database",
        description="Summary, failures by PoR status and by last status word; JSON / CSV per card, a plot, "
        "or one card's audit trail. Outputs, the plot format and matplotlib are checked first.",
    )
    report.add_argument("campaign", help="the campaign's [campaign] name")
    _db_option(report)
    report.add_argument("--json", type=Path, metavar="PATH", help="write the report (every card) as JSON")
    report.add_argument("--csv", type=Path, metavar="PATH", help="write one CSV line per card and step")
    report.add_argument(
        "--plot",
        type=Path,
        metavar="PNG",
        help="draw progress over time (needs matplotlib; format from the suffix, PNG without one)",
    )
    report.add_argument("--audit", metavar="ICCID", help="print this card's messages instead")
    _common_options(report)
    report.set_defaults(handler=_report)
    serve = sub.add_parser(
        "serve",
        help="run the OTA platform as a service: HTTP JSON API, /metrics and a live dashboard",
        description="Run campaigns submitted over HTTP (docs/http-api.md) through the same engine and store "
        "as 'campaign run', in one event loop with the HTTP server. POST routes need the bearer token of "
        "--token-file or $OTA_SERVER_TOKEN; without one the server is read only. Exit 0 on SIGTERM/SIGINT "
        "(runners stopped, leases released), 2 bad arguments.",
    )
    _db_option(serve)
    serve.add_argument(
        "--http",
        type=_http_address,
        default=("127.0.0.1", 8080),
        metavar="HOST:PORT",
        help="listen address (default 127.0.0.1:8080: loopback only; port 0 = any free one, printed)",
    )
    serve.add_argument(
        "--smsc", type=_smsc_address, metavar="HOST:PORT", help="the SMSC every campaign binds to"
    )
    serve.add_argument(
        "--network",
        type=Path,
        metavar="HANDSET.toml",
        help="instead of --smsc: start one embedded network (handset serve) for the server's lifetime",
    )
    serve.add_argument(
        "--token-file", type=Path, metavar="PATH", help="bearer token for POST routes (first line)"
    )
    serve.add_argument(
        "--max-body",
        type=int,
        default=1 << 20,
        metavar="BYTES",
        help="largest request body accepted (default 1048576; larger: 413)",
    )
    serve.add_argument(
        "--campaign-dir",
        type=Path,
        metavar="DIR",
        help="relative paths in posted campaigns (handset_config, targets csv) start here "
        "(default: the current directory)",
    )
    serve.add_argument("--seed", type=int, default=1, help="seed of the concatenation references (default 1)")
    _common_options(serve)
    serve.set_defaults(handler=_serve)
    _name_choices(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
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

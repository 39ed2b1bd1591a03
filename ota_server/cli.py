"""``ota-server``: the OTA platform's command line.

* ``ota-server packet encode-command|decode-command|encode-response|decode-response``
  (JSON on stdin, JSON on stdout; packet_tool.py).
* ``ota-server campaign run CAMPAIGN.toml [--smsc HOST:PORT] [--report PATH] [--db PATH]
  [--seed N] [--log-level L] [--pcap FILE]`` (service.py; format in docs/campaigns.md). ``--pcap``
  makes the embedded network capture SMPP and SIM APDUs (``handset serve --pcap``); refused with
  ``--smsc`` (exit 2): that network is not ours to capture.

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

from ota_protocols.errors import ConfigError, OtaSimError

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"ota-server: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OtaSimError as exc:
        print(f"ota-server: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("ota-server: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``ota-server``: the OTA platform's command line.

Exit codes: 0 success, 1 runtime failure, 2 usage, config or input error (one
line on stderr naming the key or file).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

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

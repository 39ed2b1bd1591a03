"""``sim-emulator``: drive an emulated card from the command line.

``sim-emulator exchange --card CARD.toml [--state PATH]`` reads hex C-APDUs from stdin,
one per line (blank lines and ``#`` comments ignored), and prints each R-APDU in hex,
one per line; the card's state persists in the state file (default
``<profile>.state.json``). Exit codes (house-style §8): 0 success, 1 runtime
failure, 2 usage, profile or input error (message on stderr, no traceback).

Logging is configured here only: ``-v`` gives one DEBUG line per APDU on stderr.
Keys are never logged.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ota_protocols.errors import ConfigError, StoreError
from sim_emulator.api import CardPoweredOff, load_card

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sim-emulator", description="Emulated UICC/SIM with OTA (03.48) support."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log one DEBUG line per APDU to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    exchange = sub.add_parser("exchange", help="send hex C-APDUs from stdin, print hex R-APDUs")
    exchange.add_argument(
        "--card", required=True, help="card profile TOML (e.g. configs/cards/example-card.toml)"
    )
    exchange.add_argument("--state", help="state file (default: <profile>.state.json beside the profile)")
    return parser


def _exchange(args: argparse.Namespace) -> int:
    card = load_card(args.card, args.state)
    card.reset()
    for number, line in enumerate(sys.stdin, start=1):
        text = line.split("#", 1)[0].strip().replace(" ", "")
        if not text:
            continue
        try:
            c_apdu = bytes.fromhex(text)
        except ValueError:
            print(f"sim-emulator: stdin line {number}: not hex: {line.strip()!r}", file=sys.stderr)
            return 2
        try:
            r_apdu = card.exchange(c_apdu)
        except CardPoweredOff as exc:
            print(f"sim-emulator: stdin line {number}: {exc}", file=sys.stderr)
            return 1
        print(r_apdu.hex().upper(), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return _exchange(args)
    except ConfigError as exc:
        print(f"sim-emulator: ConfigError: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"sim-emulator: StoreError: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the top-level supervisor (house-style §5)
        log.exception("unexpected failure")
        print(f"sim-emulator: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

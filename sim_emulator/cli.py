"""``sim-emulator``: drive an emulated card from the command line.

``sim-emulator exchange --card CARD.toml [--state PATH]`` reads hex C-APDUs from stdin,
one per line (blank lines and ``#`` comments ignored; spaces between digits allowed), and
prints each R-APDU in hex, one per line; the card's state persists in the state file
(default ``<profile>.state.json``). ``sim-emulator --version`` prints the version.

Exit codes (house-style §8): 0 success, 1 runtime failure, 2 usage, profile or input error:
one line on stderr, ``sim-emulator: `` then the file and key or the stdin line and what is
wrong with it, never a traceback and never the offending line itself (it may be megabytes,
or hold a key).

``sim-emulator pcsc --card CARD.toml [--card CARD2.toml ...] [--state PATH ...] [--vpcd HOST:PORT]``
inserts each card in a PC/SC reader of vsmartcard's vpcd driver (inside pcscd): card k connects to
``HOST:PORT+k`` (default 127.0.0.1:35963, the first reader of ``/etc/reader.conf.d/vpcd``), prints
``sim-emulator: card ICCID in vpcd HOST:PORT`` and serves until SIGTERM / SIGINT (exit 0) or until
vpcd closes a connection (exit 1). ``--state``: once per ``--card``, or not at all.

Logging is configured here only: ``--log-level DEBUG|INFO|WARNING|ERROR`` (default WARNING,
before or after ``exchange``; ``-v`` is ``--log-level DEBUG``) gives one DEBUG line per APDU
on stderr. Keys are never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from importlib import metadata

from ota_protocols.cli_options import add_log_level
from ota_protocols.errors import ConfigError, ConnectionLost, StoreError
from ota_protocols.hex_text import parse_hex
from sim_emulator.api import CardPoweredOff, load_card
from sim_emulator.vpcd_client import DEFAULT_VPCD_PORT, VpcdCardClient

log = logging.getLogger(__name__)

PROG = "sim-emulator"
DEFAULT_LOG_LEVEL = "WARNING"
# ISO/IEC 7816-4 §5.1: the longest command APDU, extended length: CLA INS P1 P2, Lc on three
# octets, 65,535 data octets, Le on two.
MAX_APDU_OCTETS = 4 + 3 + 65_535 + 2


def _version() -> str:
    try:
        return metadata.version("ota-sim")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def _log_level_option(parser: argparse.ArgumentParser, *, default: str | None) -> None:
    add_log_level(parser, default=default, shown_default=DEFAULT_LOG_LEVEL)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Emulated UICC/SIM with OTA (03.48) support.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _log_level_option(parser, default=DEFAULT_LOG_LEVEL)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="--log-level DEBUG: one DEBUG line per APDU on stderr"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    exchange = sub.add_parser("exchange", help="send hex C-APDUs from stdin, print hex R-APDUs")
    exchange.add_argument(
        "--card", required=True, help="card profile TOML (e.g. configs/cards/example-card.toml)"
    )
    exchange.add_argument("--state", help="state file (default: <profile>.state.json beside the profile)")
    _log_level_option(exchange, default=None)
    pcsc = sub.add_parser("pcsc", help="insert the card(s) in vsmartcard vpcd readers of pcscd (PC/SC)")
    pcsc.add_argument(
        "--card", required=True, action="append", help="card profile TOML; repeat for the next readers"
    )
    pcsc.add_argument(
        "--state", action="append", help="state file per --card (default: <profile>.state.json)"
    )
    pcsc.add_argument(
        "--vpcd",
        default=f"127.0.0.1:{DEFAULT_VPCD_PORT}",
        help="vpcd reader of the first card (card k: PORT+k); default %(default)s",
    )
    _log_level_option(pcsc, default=None)
    return parser


def _vpcd_address(text: str, cards: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError("--vpcd", f"expected HOST:PORT, got {text!r}")
    if not 0 < int(port) <= 65536 - cards:
        raise ConfigError("--vpcd", f"port {port} (+{cards - 1} for the other cards) outside 1..65535")
    return host, int(port)


async def _pcsc(args: argparse.Namespace) -> int:
    """Each card in its reader until SIGTERM / SIGINT (0) or a connection ends (ConnectionLost)."""
    states = args.state or [None] * len(args.card)
    if len(states) != len(args.card):
        raise ConfigError("--state", f"{len(states)} --state for {len(args.card)} --card: give one per card")
    host, port = _vpcd_address(args.vpcd, len(args.card))
    cards = [load_card(profile, state) for profile, state in zip(args.card, states, strict=True)]
    clients = [VpcdCardClient(card, host, port + k) for k, card in enumerate(cards)]

    def inserted(client: VpcdCardClient) -> None:
        print(f"sim-emulator: card {client.card.iccid} in {client.where}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    lost: list[str] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(client.run(inserted)) for client in clients]
            await stop.wait()  # a client that ends raises ConnectionLost: the group cancels this wait
            for task in tasks:
                task.cancel()
    except* ConnectionLost as failures:
        lost = [str(exc) for exc in failures.exceptions]
    if lost:
        raise ConnectionLost("; ".join(lost))
    return 0


def _apdu(text: str) -> bytes:
    """One stdin line's C-APDU; ``ValueError`` saying what is wrong, without repeating the line."""
    if len(text) > 2 * MAX_APDU_OCTETS + text.count(" ") + text.count("\t"):
        raise ValueError(
            f"{len(text):,} characters: longer than the longest command APDU "
            f"({MAX_APDU_OCTETS:,} octets, ISO/IEC 7816-4 extended length)"
        )
    try:
        return parse_hex(text)
    except ValueError as exc:
        raise ValueError(f"not hex: {exc}") from None


def _exchange(args: argparse.Namespace) -> int:
    card = load_card(args.card, args.state)
    card.reset()
    for number, line in enumerate(sys.stdin, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            c_apdu = _apdu(text)
        except ValueError as exc:
            print(f"{PROG}: stdin line {number}: {exc}", file=sys.stderr)
            return 2
        try:
            r_apdu = card.exchange(c_apdu)
        except CardPoweredOff as exc:
            print(f"{PROG}: stdin line {number}: {exc}", file=sys.stderr)
            return 1
        print(r_apdu.hex().upper(), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else getattr(logging, args.log_level),
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "pcsc":
            return asyncio.run(_pcsc(args))
        return _exchange(args)
    except ConfigError as exc:  # names the file and the key
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except ConnectionLost as exc:
        print(f"sim-emulator: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the top-level supervisor (house-style §5)
        log.exception("unexpected failure")
        print(f"{PROG}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

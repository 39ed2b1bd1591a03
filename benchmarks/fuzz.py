"""Fuzz every decoder with random and mutated inputs.

    python -m benchmarks.fuzz [--count 100000] [--seed 1] [--only NAME]

For each decoder, ``count`` inputs: a third purely random, the rest mutations
(bit flips, octet changes, insertions, deletions, truncations, splices) of valid
encodings. A decoder passes when every input returns or raises the project's
DecodeError (SmppViolation for SMPP, which carries the status to answer):
anything else (IndexError, struct.error, ValueError...) is a crash and is printed
with its input so it can be replayed. Exit status 1 if any decoder crashed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from ota_protocols.errors import DecodeError, SmppViolation
from ota_protocols.secured_packet.command_packet import (
    CommandPacket,
    decode_command_packet,
    encode_command_packet,
)
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.response_packet import (
    ResponsePacket,
    decode_response_packet,
    encode_response_packet,
)
from ota_protocols.secured_packet.security_parameters import Spi

EXPECTED = (DecodeError, SmppViolation)


@dataclass(frozen=True)
class Target:
    name: str
    decode: Callable[[bytes], object]
    seeds: tuple[bytes, ...]
    # Repairs a mutated input's outer length field so that half the mutations reach deeper code.
    fixup: Callable[[bytes], bytes] | None = None


def _fix_length(offset: int) -> Callable[[bytes], bytes]:
    def fix(raw: bytes) -> bytes:
        if len(raw) < offset + 2:
            return raw
        return raw[:offset] + (len(raw) - offset - 2).to_bytes(2, "big") + raw[offset + 2 :]

    return fix


def _secured_packet_targets() -> list[Target]:
    keys = PacketKeys(kic_key=bytes(range(16)), kid_key=bytes(range(16, 32)))
    tdes = PacketKeys(kic_key=bytes(range(1, 17)), kid_key=bytes(range(17, 33)))
    commands = []
    pors = []
    for spi, kic, k in (
        (Spi(0x16, 0x39), 0x12, keys),
        (Spi(0x06, 0x19), 0x15, tdes),
        (Spi(0x00, 0x01), 0x15, tdes),
        (Spi(0x02, 0x09), 0x12, keys),
    ):
        for data in (b"", bytes.fromhex("00a40004023f00"), bytes(range(90))):
            commands.append(encode_command_packet(CommandPacket(spi, kic, kic, b"\xb0\x00\x10", 5, data), k))
            pors.append(
                encode_response_packet(ResponsePacket(b"\xb0\x00\x10", 5, 0, data[:20]), spi, kic, kic, k)
            )
    return [
        Target(
            "command_packet", lambda raw: decode_command_packet(raw, keys), tuple(commands), _fix_length(0)
        ),
        Target(
            "response_packet",
            lambda raw: decode_response_packet(raw, Spi(0x16, 0x39), 0x12, 0x12, keys),
            tuple(pors),
            _fix_length(3),
        ),
        Target(
            "response_packet_3des",
            lambda raw: decode_response_packet(raw, Spi(0x06, 0x19), 0x15, 0x15, tdes),
            tuple(pors),
            _fix_length(3),
        ),
    ]


def _optional_targets() -> list[Target]:
    """Decoders of the other protocol modules (kept in one place: benchmarks/fuzz_targets.py)."""
    try:
        from benchmarks.fuzz_targets import targets
    except ImportError:  # pragma: no cover - the module ships with the project
        return []
    return [Target(*fields) for fields in targets()]


def all_targets() -> list[Target]:
    return _secured_packet_targets() + _optional_targets()


def mutate(seed: bytes, rng: random.Random) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(6)
        if choice == 0 and data:
            i = rng.randrange(len(data) * 8)
            data[i // 8] ^= 1 << (i % 8)
        elif choice == 1 and data:
            data[rng.randrange(len(data))] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif choice == 2:
            data[rng.randint(0, len(data)) : rng.randint(0, len(data))] = rng.randbytes(rng.randint(1, 8))
        elif choice == 3 and data:
            start = rng.randrange(len(data))
            del data[start : start + rng.randint(1, 8)]
        elif choice == 4:
            del data[rng.randint(0, len(data)) :]
        else:
            data += rng.randbytes(rng.randint(1, 16))
    return bytes(data)


def run_target(target: Target, count: int, rng: random.Random) -> list[tuple[bytes, str]]:
    crashes: list[tuple[bytes, str]] = []
    for i in range(count):
        if i % 3 == 0 or not target.seeds:
            raw = rng.randbytes(rng.randint(0, 300))
        else:
            raw = mutate(rng.choice(target.seeds), rng)
            if target.fixup is not None and i % 2:
                raw = target.fixup(raw)
        try:
            target.decode(raw)
        except EXPECTED:
            pass
        except Exception:
            crashes.append((raw, traceback.format_exc(limit=3)))
            if len(crashes) >= 5:
                break
    return crashes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz every decoder with random and mutated inputs.")
    parser.add_argument("--count", type=int, default=100_000, help="inputs per decoder (default 100000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", help="run one decoder by name")
    args = parser.parse_args(argv)
    failed = False
    for target in all_targets():
        if args.only and target.name != args.only:
            continue
        rng = random.Random(f"{args.seed}:{target.name}")
        start = time.perf_counter()
        crashes = run_target(target, args.count, rng)
        elapsed = time.perf_counter() - start
        print(f"{target.name:<28} {args.count:>9} inputs  {len(crashes)} crash(es)  {elapsed:6.1f} s")
        for raw, trace in crashes:
            failed = True
            print(f"  input {raw.hex()}\n{trace}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

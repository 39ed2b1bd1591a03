"""Codec benchmark: µs per encode and per decode of secured command packets and PoRs.

    python -m benchmarks.codec [--seconds 1.0]

Cases (issue #2): a 3DES-CBC + 3DES-MAC command with a 7-byte APDU and its PoR
(ciphered, with CC), and the same with AES-CBC + AES-CMAC. Keys are resolved once
per key set, as the OTA server and the SIM do (PacketKeys keeps the schedules),
so the figures are the per-message cost. Target: at most 25 µs each.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from ota_protocols.secured_packet.command_packet import (
    CommandPacket,
    encode_command_packet,
    open_command_packet,
    parse_command_header,
)
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.response_packet import (
    ResponsePacket,
    decode_response_packet,
    encode_response_packet,
)
from ota_protocols.secured_packet.security_parameters import Spi

APDU = bytes.fromhex("00a40004023f00")
TAR = bytes.fromhex("b00011")
CASES = {
    "3DES-CBC + 3DES-MAC": (
        0x35,
        PacketKeys(
            kic_key=bytes.fromhex("300102030405060708090a0b0c0d0e0f"),
            kid_key=bytes.fromhex("301102030405060708090a0b0c0d0e0f"),
        ),
    ),
    "AES-CBC + AES-CMAC": (
        0x22,
        PacketKeys(
            kic_key=bytes.fromhex("200102030405060708090a0b0c0d0e0f"),
            kid_key=bytes.fromhex("201102030405060708090a0b0c0d0e0f"),
        ),
    ),
}
SPI = Spi(0x16, 0x19)  # cipher + CC + counter "higher"; PoR always, CC, ciphered


def per_call_us(fn: Callable[[], object], seconds: float) -> float:
    """Best of five runs of ``seconds / 5`` each, in µs per call."""
    best = float("inf")
    for _ in range(5):
        n, start = 0, time.perf_counter()
        deadline = start + seconds / 5
        while True:
            for _ in range(200):
                fn()
            n += 200
            now = time.perf_counter()
            if now >= deadline:
                break
        best = min(best, (now - start) / n * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement (default 1.0)")
    args = parser.parse_args()
    print(f"{'case':<22} {'operation':<30} {'µs/op':>8}")
    for name, (kic, keys) in CASES.items():
        command = CommandPacket(SPI, kic, kic, TAR, 1, APDU)
        packet = encode_command_packet(command, keys)
        por = ResponsePacket(TAR, 1, 0, bytes.fromhex("019000"))
        por_ud = encode_response_packet(por, SPI, kic, kic, keys)
        rows = {
            "command encode": lambda c=command, k=keys: encode_command_packet(c, k),
            "command decode": lambda p=packet, k=keys: open_command_packet(parse_command_header(p), k),
            "PoR encode": lambda r=por, k=keys, i=kic: encode_response_packet(r, SPI, i, i, k),
            "PoR decode": lambda u=por_ud, k=keys, i=kic: decode_response_packet(u, SPI, i, i, k),
        }

        def setup(
            i: int = kic, kic_key: bytes | None = keys.kic_key, kid_key: bytes | None = keys.kid_key
        ) -> None:
            fresh = PacketKeys(kic_key=kic_key, kid_key=kid_key)
            fresh.cipher(i)
            fresh.checksum(i, SPI.integrity)

        rows["key set setup (once per card)"] = setup
        for operation, fn in rows.items():
            print(f"{name:<22} {operation:<30} {per_call_us(fn, args.seconds):8.2f}")


if __name__ == "__main__":
    main()

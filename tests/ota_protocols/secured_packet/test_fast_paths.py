"""The card's command-packet header reader takes the usual shape by index; the field-by-field
reader stays for everything else. Claim: for any input both give the same header or the same
error (type, field, offset, message). Inputs: sealed packets of every size, then the same with
octets changed, inserted, dropped or cut, so that both the usual shape and the near misses that
must fall back are covered."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ota_protocols.secured_packet.command_packet import (
    CommandPacket,
    _read_command_header,
    parse_command_header,
    seal_command,
)
from ota_protocols.secured_packet.crypto import ChecksumKey, CipherKey
from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm, Spi
from tests.ota_protocols.test_fast_paths import _outcome, mutated

_CIPHER = CipherKey(CipherAlgorithm.AES_CBC, bytes(range(16)))
_CMAC = ChecksumKey(IntegrityAlgorithm.AES_CMAC, bytes(range(16, 32)), 8)

packets = st.builds(
    lambda spi2, data, ciphered, mac: seal_command(
        CommandPacket(Spi(0x16 if ciphered else 0x12, spi2), 0x12, 0x12, b"\xb0\x00\x10", 7, data),
        _CIPHER if ciphered else None,
        _CMAC if mac else None,
    ),
    st.integers(0, 255),
    st.binary(max_size=60),
    st.booleans(),
    st.booleans(),
)


@given(mutated(packets), st.integers(0, 200))
def test_command_header_fast_path_agrees_with_the_general_reader(raw: bytes, base: int) -> None:
    assert _outcome(lambda d: parse_command_header(d, base_offset=base), raw) == _outcome(
        lambda d: _read_command_header(d, base), raw
    )


def test_command_header_boundaries_agree() -> None:
    """Every length up to 40 octets, CPL one or two off, CHL around its minimum and around CPL - 1."""
    filler = bytes(range(0x80, 0xA8))
    for n in range(41):
        for cpl_delta in range(-2, 3):
            cpl = max(0, n - 2 + cpl_delta)
            for chl in {0, 11, 12, 13, 14, 15, 255, *range(max(0, cpl - 2), cpl + 2)}:
                raw = (cpl.to_bytes(2, "big") + bytes((chl & 0xFF,)) + filler)[:n]
                assert _outcome(parse_command_header, raw) == _outcome(
                    lambda d: _read_command_header(d, 0), raw
                ), raw.hex()


def test_response_header_boundaries_agree() -> None:
    """Every length up to 40 octets after 02 71 00, RPL one or two off, RHL around 0A and RPL - 1."""
    from ota_protocols.secured_packet.response_packet import _read_response_header, _response_header

    filler = bytes(range(0x80, 0xA8))
    for n in range(41):
        for rpl_delta in range(-2, 3):
            rpl = max(0, n - 2 + rpl_delta)
            for rhl in {0, 9, 10, 11, 12, 255, *range(max(0, rpl - 2), rpl + 2)}:
                raw = b"\x02\x71\x00" + (rpl.to_bytes(2, "big") + bytes((rhl & 0xFF,)) + filler)[:n]
                assert _outcome(_response_header, raw) == _outcome(_read_response_header, raw), raw.hex()


def test_packet_keys_remembered_answers_are_the_resolved_ones() -> None:
    """PacketKeys answers a KIc / (KID, mode, length) it saw before from memory: the same key
    (algorithm, length) or the same status-06 error as resolving it afresh, and the memory stays bounded."""
    from ota_protocols.errors import SecurityRejection
    from ota_protocols.secured_packet.packet_keys import _MAX_MEMO, PacketKeys
    from ota_protocols.secured_packet.security_parameters import IntegrityMode

    def make() -> PacketKeys:
        return PacketKeys(kic_key=bytes(range(16)), kid_key=bytes(range(16, 32)), kid_implicit=None)

    def answer(call):  # type: ignore[no-untyped-def]
        try:
            key = call()
        except SecurityRejection as exc:
            return ("error", exc.response_status, str(exc))
        return None if key is None else (key.algorithm, getattr(key, "length", None))

    remembered = make()
    for _ in range(2):  # the second round is answered from memory where it was kept
        for kic in range(0, 256, 7):
            assert answer(lambda: remembered.cipher(kic)) == answer(lambda: make().cipher(kic))
        for kid in range(0, 256, 11):
            for mode in IntegrityMode:
                for length in (None, 4, 8):
                    got = answer(lambda: remembered.checksum(kid, mode, length))
                    assert got == answer(lambda: make().checksum(kid, mode, length))
    assert len(remembered._by_kic) <= _MAX_MEMO and len(remembered._by_kid) <= _MAX_MEMO

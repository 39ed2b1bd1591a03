"""Properties of the secured-packet codecs over every SPI, algorithm and key length."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ota_protocols.errors import DecodeError
from ota_protocols.secured_packet.command_packet import (
    CommandPacket,
    decode_command_packet,
    encode_command_packet,
)
from ota_protocols.secured_packet.counter_rules import CounterVerdict, check_counter, counter_after
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.response_packet import (
    ResponsePacket,
    decode_response_packet,
    encode_response_packet,
)
from ota_protocols.secured_packet.security_parameters import (
    CounterMode,
    IntegrityMode,
    Spi,
)

# (KIc low nibble, key length): DES-CBC, 3DES-2, 3DES-3, DES-ECB, AES-128/192/256.
CIPHERS = [(0x01, 8), (0x05, 16), (0x09, 24), (0x0D, 8), (0x02, 16), (0x02, 24), (0x02, 32)]
# (KID low nibble, key length, checksum lengths) under CC; under RC, CRC-16 / CRC-32 take no key.
MACS = [(0x01, 8, (None,)), (0x05, 16, (None,)), (0x09, 24, (None,)), (0x02, 16, (4, 8)), (0x02, 32, (4, 8))]
CRCS = [0x01, 0x05]


@st.composite
def secured_commands(draw: st.DrawFn) -> tuple[CommandPacket, PacketKeys, int | None]:
    kic_code, kic_len = draw(st.sampled_from(CIPHERS))
    integrity = draw(st.sampled_from(list(IntegrityMode)[:3]))
    ciphering = draw(st.booleans())
    checksum_length: int | None = None
    if integrity is IntegrityMode.CC:
        kid_code, kid_len, lengths = draw(st.sampled_from(MACS))
        checksum_length = draw(st.sampled_from(lengths))
    elif integrity is IntegrityMode.RC:
        kid_code, kid_len = draw(st.sampled_from(CRCS)), 0
    else:
        kid_code, kid_len = 0x01, 0
    key_set = draw(st.integers(1, 15))
    spi = Spi(
        int(integrity) | (0x04 if ciphering else 0) | (draw(st.integers(0, 3)) << 3),
        draw(st.integers(0, 0x3F)),
    )
    keys = PacketKeys(
        kic_key=draw(st.binary(min_size=kic_len, max_size=kic_len)),
        kid_key=draw(st.binary(min_size=kid_len, max_size=kid_len)) if kid_len else None,
    )
    command = CommandPacket(
        spi,
        (key_set << 4) | kic_code,
        (key_set << 4) | kid_code,
        draw(st.binary(min_size=3, max_size=3)),
        draw(st.integers(0, (1 << 40) - 1)),
        draw(st.binary(max_size=120)),
    )
    return command, keys, checksum_length


@settings(max_examples=300)
@given(secured_commands(), st.integers(0, 255))
def test_command_round_trip(sample: tuple[CommandPacket, PacketKeys, int | None], padding: int) -> None:
    command, keys, checksum_length = sample
    packet = encode_command_packet(command, keys, checksum_length=checksum_length, padding_byte=padding)
    opened = decode_command_packet(packet, keys)
    header = opened.header
    assert (header.spi, header.kic, header.kid, header.tar) == (
        command.spi,
        command.kic,
        command.kid,
        command.tar,
    )
    assert (opened.cntr, opened.data) == (command.cntr, command.data)
    assert opened.checksum_valid is (None if command.spi.integrity is IntegrityMode.NONE else True)
    if command.spi.ciphering:
        assert (len(packet) - 10) % (16 if command.kic & 0x0F == 0x02 else 8) == 0


@settings(max_examples=300)
@given(secured_commands(), st.data())
def test_any_flipped_bit_under_the_checksum_is_detected(
    sample: tuple[CommandPacket, PacketKeys, int | None], data: st.DataObject
) -> None:
    command, keys, checksum_length = sample
    assume(command.spi.integrity is not IntegrityMode.NONE)
    packet = bytearray(encode_command_packet(command, keys, checksum_length=checksum_length))
    # The checksum covers every octet of the packet from CPL on (TS 31.115 §4.2); the RC/CC itself
    # sits in the same range, so a flip anywhere must be caught.
    position = data.draw(st.integers(0, len(packet) * 8 - 1))
    packet[position // 8] ^= 1 << (position % 8)
    try:
        opened = decode_command_packet(bytes(packet), keys)
    except DecodeError:
        return  # a header that no longer parses is refused (status 06): detected too
    assert opened.checksum_valid is False


@st.composite
def secured_responses(draw: st.DrawFn) -> tuple[ResponsePacket, Spi, int, int, PacketKeys]:
    command, keys, _ = draw(secured_commands())
    por_integrity = draw(st.sampled_from(list(IntegrityMode)[:3]))
    if por_integrity is IntegrityMode.RC and command.kid & 0x0F not in CRCS:
        por_integrity = IntegrityMode.NONE
    if por_integrity is IntegrityMode.CC and keys.kid_key is None:
        por_integrity = IntegrityMode.NONE
    spi = Spi(command.spi.spi1, 0x01 | (int(por_integrity) << 2) | (0x10 if draw(st.booleans()) else 0))
    response = ResponsePacket(
        command.tar, command.cntr, draw(st.integers(0, 255)), draw(st.binary(max_size=100))
    )
    return response, spi, command.kic, command.kid, keys


@settings(max_examples=300)
@given(secured_responses())
def test_response_round_trip(sample: tuple[ResponsePacket, Spi, int, int, PacketKeys]) -> None:
    response, spi, kic, kid, keys = sample
    user_data = encode_response_packet(response, spi, kic, kid, keys)
    decoded = decode_response_packet(user_data, spi, kic, kid, keys)
    assert (decoded.tar, decoded.cntr, decoded.status, decoded.data) == (
        response.tar,
        response.cntr,
        response.status,
        response.data,
    )
    assert decoded.checksum_valid is (None if spi.por_integrity is IntegrityMode.NONE else True)


@settings(max_examples=300)
@given(secured_responses(), st.data())
def test_por_bit_flip_under_checksum_is_detected(
    sample: tuple[ResponsePacket, Spi, int, int, PacketKeys], data: st.DataObject
) -> None:
    response, spi, kic, kid, keys = sample
    assume(spi.por_integrity is not IntegrityMode.NONE)
    user_data = bytearray(encode_response_packet(response, spi, kic, kid, keys))
    position = data.draw(st.integers(0, len(user_data) * 8 - 1))
    user_data[position // 8] ^= 1 << (position % 8)
    try:
        decoded = decode_response_packet(bytes(user_data), spi, kic, kid, keys)
    except DecodeError:
        return
    # Never silently accepted: a flip that removes the checksum altogether (RHL) leaves it unverified.
    assert decoded.checksum_valid is not True


KEYS = PacketKeys(kic_key=bytes(range(16)), kid_key=bytes(range(16, 32)))


@settings(max_examples=500)
@given(
    st.binary(max_size=200),
    st.sampled_from([Spi(0x16, 0x39), Spi(0x06, 0x19), Spi(0x00, 0x01)]),
    st.sampled_from([0x12, 0x15, 0x00, 0x31]),
)
def test_decoders_on_arbitrary_bytes_raise_only_decode_error(data: bytes, spi: Spi, kic: int) -> None:
    for decode in (
        lambda: decode_command_packet(data, KEYS),
        lambda: decode_response_packet(data, spi, kic, kic, KEYS),
        lambda: decode_response_packet(b"\x02\x71\x00" + data, spi, kic, kic, KEYS),
    ):
        with contextlib.suppress(DecodeError):
            decode()


# --- counter rules (TS 102 225 §5.1.1) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "stored", "received", "verdict"),
    [
        (CounterMode.NO_COUNTER, 10, 0, CounterVerdict.ACCEPT),
        (CounterMode.NO_CHECK, 10, 3, CounterVerdict.ACCEPT),
        (CounterMode.HIGHER, 10, 10, CounterVerdict.CNTR_LOW),
        (CounterMode.HIGHER, 10, 9, CounterVerdict.CNTR_LOW),
        (CounterMode.HIGHER, 10, 500, CounterVerdict.ACCEPT),
        (CounterMode.ONE_HIGHER, 10, 11, CounterVerdict.ACCEPT),
        (CounterMode.ONE_HIGHER, 10, 12, CounterVerdict.CNTR_HIGH),
        (CounterMode.ONE_HIGHER, 10, 10, CounterVerdict.CNTR_LOW),
        (CounterMode.HIGHER, (1 << 40) - 1, 5, CounterVerdict.BLOCKED),
        (CounterMode.ONE_HIGHER, (1 << 40) - 1, 0, CounterVerdict.BLOCKED),
    ],
)
def test_counter_rules(mode: CounterMode, stored: int, received: int, verdict: CounterVerdict) -> None:
    assert check_counter(mode, stored, received) is verdict


@given(st.sampled_from(list(CounterMode)), st.integers(0, (1 << 40) - 1), st.integers(0, (1 << 40) - 1))
def test_an_accepted_counter_is_never_accepted_twice_and_never_moves_back(
    mode: CounterMode, stored: int, received: int
) -> None:
    if check_counter(mode, stored, received) is not CounterVerdict.ACCEPT:
        return
    after = counter_after(mode, stored, received)
    assert after >= stored
    if mode in (CounterMode.HIGHER, CounterMode.ONE_HIGHER):
        assert after == received
        assert check_counter(mode, after, received) is not CounterVerdict.ACCEPT

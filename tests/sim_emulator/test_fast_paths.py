"""The card's hot paths read and answer the common shapes directly; they must agree with the
general code exactly.

Claims: the compact script reader gives the same commands as ``CommandApdu.decode_t0`` read
back to back (an undecodable command is ``None`` and ends the list); a SELECT answered from the
tree's prepared outcomes leaves the same selection and answers the same bytes as one built
field by field.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ota_protocols.apdu.apdu import CASE2_INSTRUCTIONS, CommandApdu, ResponseApdu, StatusWord
from ota_protocols.byte_reader import ByteReader
from ota_protocols.errors import ApduRejected, DecodeError
from sim_emulator.applets import RAM_CASE2_INSTRUCTIONS
from sim_emulator.file_system import (
    DedicatedFile,
    FileView,
    Selection,
    execute_file_command,
    standard_tree,
)
from sim_emulator.remote_apdu_executor import _decode_compact

TREE = standard_tree()


def _general_compact(script: bytes, case2: frozenset[int]) -> list[CommandApdu | None]:
    reader = ByteReader(script)
    commands: list[CommandApdu | None] = []
    while not reader.at_end():
        try:
            commands.append(CommandApdu.decode_t0(reader, case2_instructions=case2))
        except DecodeError:
            commands.append(None)
            break
    return commands


_commands = st.builds(
    lambda cla, ins, p1, p2, data: bytes((cla, ins, p1, p2, len(data))) + data,
    st.sampled_from([0x00, 0x80, 0xA0]),
    st.sampled_from([0xA4, 0xB0, 0xB2, 0xC0, 0xD6, 0xDC, 0xF2, 0xE6, 0xE8, 0x36]),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=40),
)


@given(
    st.lists(_commands, max_size=6).map(b"".join),
    st.integers(0, 3),
    st.sampled_from([CASE2_INSTRUCTIONS, RAM_CASE2_INSTRUCTIONS]),
)
def test_compact_reader_agrees_with_decode_t0(script: bytes, cut: int, case2: frozenset[int]) -> None:
    script = script[: len(script) - cut] if cut else script  # also scripts that end mid-command
    assert _decode_compact(script, case2) == _general_compact(script, case2)


def _outcome(view: FileView, selection: Selection, apdu: CommandApdu):  # type: ignore[no-untyped-def]
    try:
        outcome = execute_file_command(view, selection, apdu)
    except ApduRejected as exc:
        return ("sw", exc.status_word)
    return (outcome.response.encode(), outcome.selection, outcome.writes)


def _expected_select(view: FileView, selection: Selection, apdu: CommandApdu):  # type: ignore[no-untyped-def]
    """SELECT by FID, built field by field (TS 102 221 §8.4.1, §11.1.1)."""
    outcome = _outcome(view, selection, apdu)
    if outcome[0] == "sw":
        return outcome
    path = outcome[1].ef or outcome[1].df
    node = TREE.nodes[path]
    new = Selection(path) if isinstance(node, DedicatedFile) else Selection(path[:-1], path)
    return (outcome[0], new, ())


@given(
    st.sampled_from([p for p in TREE.nodes]),
    st.sampled_from(sorted({p[-1] for p in TREE.nodes} | {b"\x12\x34"})),
    st.sampled_from([0x0C, 0x04, 0x00, 0x02]),
    st.booleans(),
)
def test_select_outcomes_are_the_general_ones(current: tuple[bytes, ...], fid: bytes, p2: int, absent: bool) -> None:
    overlay = {(b"\x3f\x00", b"\x7f\x20", b"\x6f\x50"): None} if absent else {}
    view = FileView(TREE, {}, overlay)
    node = TREE.nodes[current]
    selection = Selection(current) if isinstance(node, DedicatedFile) else Selection(current[:-1], current)
    apdu = CommandApdu(0x00, 0xA4, 0x00, p2, fid)
    got = _outcome(view, selection, apdu)
    assert got == _expected_select(view, selection, apdu)
    if got[0] != "sw" and p2 == 0x0C:
        assert got[0] == ResponseApdu(b"", StatusWord.OK).encode()


def test_scripts_are_read_once_per_application_and_the_memo_is_bounded() -> None:
    from sim_emulator.applets import Application
    from sim_emulator.profile import AppKind, ApplicationProfile
    from sim_emulator.remote_apdu_executor import MAX_DECODED_SCRIPTS, _compact_commands

    ram = Application(ApplicationProfile(tar=b"\x00\x00\x00", kind=AppKind.RAM, msl=0))
    script = bytes.fromhex("80f24002024f00" "80e602000d")  # GET STATUS is case 4 on RAM; INSTALL cut
    first = _compact_commands(ram, script)
    assert list(first) == _decode_compact(script, RAM_CASE2_INSTRUCTIONS)
    assert first[-1] is None and first[0] is not None and first[0].data == b"\x4f\x00"
    assert _compact_commands(ram, script) is first  # the memo answers the second time
    for n in range(3 * MAX_DECODED_SCRIPTS):
        _compact_commands(ram, bytes((0x80, 0xCA, 0x9F, n, 0x00)))
    assert len(ram.decoded_scripts) <= MAX_DECODED_SCRIPTS


def _iccid_general(iccid: str) -> bytes:
    digits = iccid.ljust(20, "f")
    return bytes(int(digits[i + 1] + digits[i], 16) for i in range(0, 20, 2))


def _imsi_general(imsi: str) -> bytes:
    nibbles = [9 if len(imsi) % 2 else 1] + [int(d) for d in imsi]
    if len(nibbles) % 2:
        nibbles.append(0xF)
    body = bytes(nibbles[i] | (nibbles[i + 1] << 4) for i in range(0, len(nibbles), 2))
    return (bytes((len(body),)) + body).ljust(9, b"\xff")[:9]


@given(st.text("0123456789", min_size=0, max_size=22))
def test_identity_files_are_the_nibble_by_nibble_coding(digits: str) -> None:
    """EF.ICCID (TS 102 221 §13.2) and EF.IMSI (GSM 11.11 §10.3.2) as swapped BCD, digit by digit."""
    from sim_emulator.file_system import iccid_content, imsi_content

    assert iccid_content(digits) == _iccid_general(digits)
    assert imsi_content(digits[:15]) == _imsi_general(digits[:15])


def test_initial_states_are_each_applications_own() -> None:
    from sim_emulator.applets import ApplicationTable
    from sim_emulator.profile import AppKind, ApplicationProfile

    def purse(tar: bytes, step: int, modulo: int) -> ApplicationProfile:
        return ApplicationProfile(
            tar=tar, kind=AppKind.PURSE, max_balance=5000, balance=1000, balance_step=step, balance_modulo=modulo
        )

    table = ApplicationTable(
        (
            ApplicationProfile(tar=b"\xb0\x00\x10", kind=AppKind.RFM, action_counter=7),
            ApplicationProfile(tar=b"\x00\x00\x00", kind=AppKind.RAM),
            purse(b"\xbf\xff\x01", 100, 50),
            purse(b"\xbf\xff\x02", 0, 50),
            purse(b"\xbf\xff\x03", 100, 1),
        )
    )
    for index in (0, 1, 49, 50, 77, 10**6 + 3):
        assert table.initial_states(index) == {app.tar: app.initial_state(index) for app in table}
    assert table.initial_states(3)[b"\xbf\xff\x01"].balance == 1300


def test_a_script_session_carries_selection_and_pending_response_from_command_to_command() -> None:
    """TS 102 226 §7 / ISO/IEC 7816-4: a SELECT with FCP leaves its data for GET RESPONSE (61 XX
    with no_auto_get_response), GET RESPONSE hands it out in pieces (61 XX, 6C XX for a wrong Le),
    any other command drops it (then 69 85); without no_auto_get_response the FCP comes at once."""
    from sim_emulator.applets import Application
    from sim_emulator.file_system import fcp
    from sim_emulator.profile import AppKind, ApplicationProfile, CardOptions

    rfm = Application(ApplicationProfile(tar=b"\xb0\x00\x10", kind=AppKind.RFM))
    app = rfm.initial_state()
    view = FileView(TREE, {})
    mf_fcp = fcp(view, (b"\x3f\x00",))

    def run(options: CardOptions, *apdus: str) -> list[str]:
        session = rfm.start_session()
        out = []
        for text in apdus:
            response, _app, _writes = rfm.execute(CommandApdu.decode(bytes.fromhex(text)), app, view, session, options)
            out.append(response.encode().hex())
        return out

    lazy = CardOptions(no_auto_get_response=True)
    n = len(mf_fcp)
    assert run(lazy, "00a40004023f00", "00c0000004", "00c00000ff", "00c0000000", "00c0000000") == [
        f"61{n:02x}",
        mf_fcp[:4].hex() + f"61{n - 4:02x}",
        f"6c{n - 4:02x}",
        mf_fcp[4:].hex() + "9000",
        "6985",
    ]
    assert run(lazy, "00a40004023f00", "00a4000c022fe2", "00c0000000", "00b000000a") == [
        f"61{n:02x}",
        "9000",
        "6985",
        "ff" * 10 + "9000",  # the SELECT of 2FE2 before stays: READ BINARY reads it
    ]
    assert run(CardOptions(no_auto_get_response=False), "00a40004023f00", "00c0000000") == [
        mf_fcp.hex() + "9000",
        "6985",
    ]


def test_uicc_lc_rule_is_iso_7816_short_form() -> None:
    """Case 1/3/4 APDUs from the ME: P3 = Lc, then exactly Lc octets or Lc + one Le octet
    (ISO/IEC 7816-4 short form); P3 = 00 with any octet after it is wrong (67 00)."""
    from sim_emulator.uicc import Uicc

    for p3 in range(6):
        for size in range(8):
            raw = bytes((0x80, 0xC2, 0x00, 0x00, p3)) + bytes(range(1, size + 1))
            wrong = size not in (p3, p3 + 1) or (p3 == 0 and size > 0)
            try:
                apdu = Uicc._parse(raw, 0x80, 0xC2, 0x00, 0x00)
            except ApduRejected as exc:
                assert wrong and exc.status_word == StatusWord.WRONG_LENGTH, (p3, size)
            else:
                assert not wrong and apdu.data == raw[5 : 5 + p3], (p3, size)

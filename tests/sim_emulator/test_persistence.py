"""Write-ahead persistence: file store restarts, card tearing, and a counter state machine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ota_protocols.secured_packet.command_packet import command_user_data
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.response_packet import ResponseStatus, decode_response_packet
from ota_protocols.secured_packet.security_parameters import CipherAlgorithm, IntegrityAlgorithm
from sim_emulator.api import CardPoweredOff, SimCard, card_from_fleet, load_card
from sim_emulator.card_state_store import MemoryCardStateStore
from sim_emulator.profile import CardIdentity
from tests.sim_emulator.ota_kit import (
    EXAMPLE_CARD,
    SPEC,
    SPI_DEFAULT,
    TAR_PURSE,
    TEMPLATE,
    apdu,
    command_packet,
    decode_por,
    envelope,
    new_card,
    send_script,
    transmit,
)

EXAMPLE_KEYS = PacketKeys(
    kic_key=bytes.fromhex("000102030405060708090a0b0c0d0e0f"),
    kid_key=bytes.fromhex("101112131415161718191a1b1c1d1e1f"),
    kic_implicit=CipherAlgorithm.AES_CBC,
    kid_implicit=IntegrityAlgorithm.AES_CMAC,
)
UPDATE_SPN = apdu("00A4000C027F20 00A4000C026F46 00D6000003414243")


def _example(tmp_path: Path) -> Path:
    profile = tmp_path / "card.toml"
    shutil.copy(EXAMPLE_CARD, profile)
    return profile


def _status(data: bytes) -> int:
    return decode_response_packet(data, SPI_DEFAULT, 0x12, 0x12, EXAMPLE_KEYS).status


def test_file_store_keeps_counters_files_and_refuses_a_replay_after_restart(tmp_path: Path) -> None:
    profile = _example(tmp_path)
    card = load_card(profile)
    card.reset()
    packet = command_packet(UPDATE_SPN, 9, keys=EXAMPLE_KEYS)
    assert _status(transmit(card, envelope(command_user_data(packet))).data) == 0
    assert (tmp_path / "card.state.json").exists()
    del card
    restarted = load_card(profile)  # "kill": a new card from the same files
    restarted.reset()
    report = restarted.report()
    assert report["applications"][0]["action_counter"] == 1
    assert report["counters"] == [{"kvn": 1, "tar": "b00010", "cntr": 9}]
    for c in ("00A4000C027F20", "00A4000C026F46"):
        transmit(restarted, apdu(c))
    assert transmit(restarted, apdu("00B0000003")).data == b"ABC"
    assert _status(transmit(restarted, envelope(command_user_data(packet))).data) == ResponseStatus.CNTR_LOW


def test_explicit_state_path_and_corrupt_state_file(tmp_path: Path) -> None:
    profile = _example(tmp_path)
    state = tmp_path / "elsewhere.json"
    card = load_card(profile, state)
    transmit(card, envelope(command_user_data(command_packet(UPDATE_SPN, 1, keys=EXAMPLE_KEYS))))
    assert state.exists()
    state.write_text("{not json")
    from ota_protocols.errors import StoreError

    with pytest.raises(StoreError, match=r"elsewhere\.json"):
        load_card(profile, state)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_tearing_after_k_actions_keeps_them_and_sends_no_por(k: int) -> None:
    store = MemoryCardStateStore()
    card = card_from_fleet(SPEC, 0, TEMPLATE)
    # Same card, same store: what a reboot would find.
    identity_card = SimCard(TEMPLATE, card._uicc.identity, store)
    identity_card.reset()
    script = b"".join(apdu(f"8030000004{n:08x}") for n in (1, 2, 4))
    identity_card.stop_after_actions(k)
    with pytest.raises(CardPoweredOff):
        send_script(identity_card, script, 1, tar=TAR_PURSE)
    with pytest.raises(CardPoweredOff):
        identity_card.exchange(apdu("00A4000C023F00"))
    rebooted = SimCard(TEMPLATE, identity_card._uicc.identity, store)
    purse = rebooted.report()["applications"][2]
    assert purse["action_counter"] == k
    assert purse["balance"] == 1000 + [0, 1, 3][k]
    assert rebooted.report()["counters"] == [{"kvn": 1, "tar": "bfff01", "cntr": 1}]
    # The torn card itself comes back after reset with the same state; the replay is refused.
    identity_card.reset()
    assert identity_card.report() == rebooted.report()
    assert (
        decode_por(send_script(identity_card, script, 1, tar=TAR_PURSE).data).status
        == ResponseStatus.CNTR_LOW
    )


def test_tear_hook_with_more_than_the_script_completes_normally() -> None:
    card = new_card(0)
    card.stop_after_actions(5)
    answer = send_script(card, apdu("8030000004 00000001"), 1, tar=TAR_PURSE)
    assert answer.sw == 0x9000 and answer.data
    assert card.report()["applications"][2]["action_counter"] == 1


class CounterMachine(RuleBasedStateMachine):
    """send / replay / crash / reload never accept a replay and never move a counter back."""

    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryCardStateStore()
        self.identity: CardIdentity = new_card(0)._uicc.identity
        self.card = SimCard(TEMPLATE, self.identity, self.store)
        self.sent: list[bytes] = []
        self.next_cntr = 1
        self.highest_stored = 0
        self.actions = 0

    def _send(self, packet: bytes) -> int | None:
        try:
            answer = transmit(self.card, envelope(command_user_data(packet)))
        except CardPoweredOff:
            self.card.reset()
            return None
        return decode_por(answer.data).status

    @rule(step=st.integers(1, 3))
    def send(self, step: int) -> None:
        cntr = self.next_cntr
        self.next_cntr += step
        packet = command_packet(apdu("8030000004 00000001"), cntr, tar=TAR_PURSE)
        self.sent.append(packet)
        assert self._send(packet) in (None, 0)

    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        if self.sent:
            # Every sent packet had its CNTR stored before it ran (even when torn): never again.
            status = self._send(data.draw(st.sampled_from(self.sent)))
            assert status in (None, ResponseStatus.CNTR_LOW), f"replay answered {status}"

    @rule(k=st.integers(0, 1))
    def crash_next(self, k: int) -> None:
        self.card.stop_after_actions(k)

    @rule()
    def reload(self) -> None:
        self.card = SimCard(TEMPLATE, self.identity, self.store)
        self.card.reset()

    @invariant()
    def counters_never_move_back(self) -> None:
        report = self.card.report()
        stored = max((c["cntr"] for c in report["counters"]), default=0)
        assert stored >= self.highest_stored
        self.highest_stored = stored
        purse = report["applications"][2]
        assert purse["action_counter"] >= self.actions
        self.actions = purse["action_counter"]
        # Exactly-once: every increment is one accepted-or-torn packet, never more than were sent.
        assert purse["action_counter"] <= len(self.sent)
        assert purse["balance"] == 1000 + purse["action_counter"]


CounterMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestCounterMachine = CounterMachine.TestCase

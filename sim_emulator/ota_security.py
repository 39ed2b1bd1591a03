"""The card's OTA security layer: verify a command packet, decide the counter, build PoRs.

Clauses: TS 102 225 §5.1 (command packet, SPI §5.1.1, KIc §5.1.2, KID §5.1.3), §5.2
(response packet and status codes), TS 31.115 §4.2-§4.3 (SMS-PP form, SPI2 b6), TS 102
226 §8.2.1.3.2.4 (MSL); protocols.md §2.5 (receiver order), §5 (counters), §6 (PoR),
§13.2 (MSL comparison).

Glossary: SPI security parameter indicator, KIc/KID key identifiers, KVN key version
number (b8..b5 of KIc/KID), TAR toolkit application reference, MSL minimum security
level, CNTR replay counter, CC cryptographic checksum, RC redundancy check, PoR proof
of receipt.

PURE. :func:`verify` applies protocols.md §2.5 in order and returns a
:class:`SecurityVerdict` saying which status the packet earns, which CNTR to persist
(the shell stores it BEFORE running the script: house-style §2 step 2) and, when
accepted, the opened script. :func:`seal_por` / :func:`por_wanted` build the PoR.

Security choices (docs/sim-emulator.md):

* A packet whose checksum failed (status 01) is NEVER answered with a secured PoR:
  a card that MACs or ciphers a reply to an unauthenticated packet is an oracle.
  For the same reason a CNTR that arrived ciphered is echoed in an error PoR only
  when a cryptographic checksum (CC) authenticated the packet; otherwise zeros.
* Statuses 06 and 09 are always unsecured (TS 102 225 §5.2; no keys for 09).
* Default ``error_por_style = unsecured``: every error PoR goes out without cipher
  and checksum; ``secured`` secures 02/03/04 (CC verified) as SPI2 asks.
* KIc and KID must name the same key set when both are used (else 06), and the
  algorithm they name must be the one the key set is configured for (else 06).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ota_protocols.errors import DecodeError, SecurityRejection
from ota_protocols.secured_packet.command_packet import (
    MIN_CHL,
    CommandHeader,
    OpenedCommand,
    open_command,
    parse_command_header,
)
from ota_protocols.secured_packet.counter_rules import CounterVerdict, check_counter, counter_after
from ota_protocols.secured_packet.crypto import ChecksumKey, CipherKey
from ota_protocols.secured_packet.packet_keys import PacketKeys
from ota_protocols.secured_packet.response_packet import (
    ResponsePacket,
    ResponseStatus,
    por_keys,
    seal_response,
)
from ota_protocols.secured_packet.security_parameters import (
    IntegrityMode,
    PorRequest,
    Spi,
    key_index,
    resolve_cipher,
    resolve_integrity,
)
from sim_emulator.applets import Application, ApplicationTable
from sim_emulator.card_state import CounterKey
from sim_emulator.profile import CardOptions, ErrorPorStyle, KeysetProfile

CLEAR_HEADER = 10  # CPL(2) CHL SPI(2) KIc KID TAR(3)
_NO_KEYS = PacketKeys()
_MAX_KEY_CHECKS = 64


class KeyRing:
    """Key sets by KVN, with their :class:`PacketKeys` built on first use and cached."""

    __slots__ = ("_cache", "_checks", "_profiles")

    def __init__(self, keysets: tuple[KeysetProfile, ...]) -> None:
        self._profiles = {k.kvn: k for k in keysets}
        self._cache: dict[int, PacketKeys] = {}
        self._checks: dict[tuple[int, int, int, int, int], KeyCheck] = {}

    def profile(self, kvn: int) -> KeysetProfile | None:
        return self._profiles.get(kvn)

    def keys(self, kvn: int) -> PacketKeys | None:
        cached = self._cache.get(kvn)
        if cached is None:
            profile = self._profiles.get(kvn)
            if profile is None:
                return None
            cached = PacketKeys(
                kic_key=profile.kic,
                kid_key=profile.kid,
                kic_implicit=profile.kic_algorithm,
                kid_implicit=profile.kid_algorithm,
            )
            self._cache[kvn] = cached
        return cached

    def check(self, header: CommandHeader) -> KeyCheck:
        """Step 4 of protocols.md §2.5 for this header: which key set, and whether its keys and
        algorithms suit KIc, KID, SPI and CHL. A pure function of those octets and the key sets,
        so its answer is kept (per KIc, KID, SPI and CHL) and a card pays for it once."""
        spi = header.spi
        memo_key = (header.kic, header.kid, spi.spi1, spi.spi2, header.chl)
        found = self._checks.get(memo_key)
        if found is None:
            found = _check_keys(header, self)
            if len(self._checks) >= _MAX_KEY_CHECKS:
                self._checks.clear()  # bounded: a sender varying these octets cannot grow it
            self._checks[memo_key] = found
        return found

    def __repr__(self) -> str:
        return f"KeyRing(kvns={sorted(self._profiles)})"


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """The outcome of step 4: ``status`` None with the key set, else the status and why."""

    kvn: int
    keys: PacketKeys
    status: int | None = None
    reason: str = ""
    cipher_key: CipherKey | None = None  # for KIc, when the command or its PoR is ciphered
    checksum_key: ChecksumKey | None = None  # the command's RC/CC (SPI1 b2b1)
    por: tuple[CipherKey | None, ChecksumKey | None] | None = None  # por_keys(), when a PoR is asked


def _check_keys(header: CommandHeader, keyring: KeyRing) -> KeyCheck:
    spi = header.spi
    n = header.checksum_length

    def reject(status: int, reason: str) -> KeyCheck:
        return KeyCheck(0, _NO_KEYS, status, reason)

    por_requested = spi.por in (PorRequest.ALWAYS, PorRequest.ON_ERROR)
    uses_kic = spi.ciphering or (por_requested and spi.por_ciphered)
    uses_kid = spi.integrity is not IntegrityMode.NONE or (
        por_requested and spi.por_integrity is not IntegrityMode.NONE
    )
    kvns = {key_index(header.kic)} if uses_kic else set()
    kvns |= {key_index(header.kid)} if uses_kid else set()
    if len(kvns) > 1:
        return reject(
            ResponseStatus.UNIDENTIFIED_SECURITY_ERROR,
            f"KIc {header.kic:02x} and KID {header.kid:02x} name different key sets",
        )
    kvn = (
        kvns.pop()
        if kvns
        else key_index(header.kid if spi.integrity is not IntegrityMode.NONE else header.kic)
    )
    keys = _NO_KEYS
    cipher_key: CipherKey | None = None
    checksum_key: ChecksumKey | None = None
    por: tuple[CipherKey | None, ChecksumKey | None] | None = None
    if uses_kic or uses_kid:
        found = keyring.keys(kvn)
        profile = keyring.profile(kvn)
        if found is None or profile is None:
            return reject(ResponseStatus.UNIDENTIFIED_SECURITY_ERROR, f"no key set with KVN {kvn}")
        keys = found
        try:
            if uses_kic and resolve_cipher(header.kic, profile.kic_algorithm) is not profile.kic_algorithm:
                return reject(
                    ResponseStatus.UNIDENTIFIED_SECURITY_ERROR,
                    f"KIc {header.kic:02x} is not key set {kvn}'s {profile.kic_algorithm.value}",
                )
            for mode in (spi.integrity, spi.por_integrity if por_requested else IntegrityMode.NONE):
                algorithm = resolve_integrity(header.kid, mode, profile.kid_algorithm)
                if mode is IntegrityMode.CC and algorithm is not profile.kid_algorithm:
                    return reject(
                        ResponseStatus.UNIDENTIFIED_SECURITY_ERROR,
                        f"KID {header.kid:02x} is not key set {kvn}'s {profile.kid_algorithm.value}",
                    )
            if uses_kic:
                cipher_key = keys.cipher(header.kic)
            checksum_key = keys.checksum(header.kid, spi.integrity, n or None)
            if (checksum_key.length if checksum_key else 0) != n:
                return reject(
                    ResponseStatus.UNIDENTIFIED_SECURITY_ERROR,
                    f"CHL {header.chl:#04x} does not fit KID {header.kid:02x}",
                )
            if por_requested:
                por = por_keys(
                    spi, header.kic, header.kid, keys, checksum_length=_por_checksum_length(header)
                )
        except SecurityRejection as exc:
            return reject(exc.response_status, str(exc))
    return KeyCheck(kvn, keys, None, "", cipher_key, checksum_key, por)


@dataclass(frozen=True, slots=True)
class SecurityVerdict:
    status: int  # ResponseStatus; 00 = accepted
    reason: str
    spi: Spi | None = None  # None: too short to read; no PoR possible
    kic: int = 0
    kid: int = 0
    tar: bytes = b""
    cntr: int = 0  # CNTR to echo in the PoR
    authenticated: bool = False  # a CC was verified
    header: CommandHeader | None = None
    opened: OpenedCommand | None = None
    application: Application | None = None
    keys: PacketKeys | None = None
    counter_key: CounterKey | None = None
    new_cntr: int | None = None  # to persist before execution; None: nothing to store
    por_keys: tuple[CipherKey | None, ChecksumKey | None] | None = (
        None  # resolved in step 4, if a PoR is asked
    )

    @property
    def accepted(self) -> bool:
        return self.status == ResponseStatus.POR_OK


def meets_msl(spi1: int, msl: int) -> bool:
    """protocols.md §13.2: each part of SPI1 at least as strong as in the MSL
    (integrity none < RC < CC < DS, ciphering off < on, counter 00 < 01 < 10 < 11)."""
    return (spi1 & 0x03) >= (msl & 0x03) and (spi1 & 0x04) >= (msl & 0x04) and (spi1 & 0x18) >= (msl & 0x18)


def _clear_cntr(spi: Spi, body: bytes) -> int:
    """The CNTR when it travelled in clear, else 0 (never echo an unauthenticated decryption)."""
    if spi.ciphering or len(body) < 5:
        return 0
    return int.from_bytes(body[:5], "big")


def verify(
    packet: bytes,
    *,
    applications: ApplicationTable,
    keyring: KeyRing,
    counters: Mapping[CounterKey, int],
    options: CardOptions,
) -> SecurityVerdict:
    """protocols.md §2.5, steps 2 to 8; ``packet`` runs from CPL to the end."""
    # Step 2: the header (TS 102 225 §5.1, TS 31.115 §4.2) -> 06.
    try:
        header = parse_command_header(packet)
    except DecodeError as exc:
        if len(packet) < CLEAR_HEADER:
            return SecurityVerdict(ResponseStatus.UNIDENTIFIED_SECURITY_ERROR, f"header: {exc}")
        spi = Spi.from_bytes(packet[3:5])
        return SecurityVerdict(
            ResponseStatus.UNIDENTIFIED_SECURITY_ERROR,
            f"header: {exc}",
            spi,
            packet[5],
            packet[6],
            packet[7:10],
            _clear_cntr(spi, packet[10:]),
        )
    spi, tar = header.spi, header.tar

    def reject(status: int, reason: str, **more: object) -> SecurityVerdict:
        base = dict(
            spi=spi,
            kic=header.kic,
            kid=header.kid,
            tar=tar,
            header=header,
            cntr=_clear_cntr(spi, header.body),
        )
        return SecurityVerdict(status, reason, **{**base, **more})  # type: ignore[arg-type]

    n = header.checksum_length
    # TS 102 225 §5.1.1: CHL must match SPI1 b2b1 (no RC/CC/DS <=> CHL = 0D).
    if (spi.integrity is IntegrityMode.NONE) != (n == 0):
        return reject(
            ResponseStatus.UNIDENTIFIED_SECURITY_ERROR,
            f"CHL {header.chl:#04x} does not match SPI1 integrity {spi.integrity.name}",
        )
    # Step 3: TAR (TS 102 225 §5.2 status 09).
    application = applications.get(tar)
    if application is None:
        return reject(ResponseStatus.TAR_UNKNOWN, f"TAR {tar.hex()} unknown")
    # Step 4: key sets and algorithms -> 06 (project choice, protocols.md §2.5).
    check = keyring.check(header)
    if check.status is not None:
        return reject(check.status, check.reason)
    kvn, keys = check.kvn, check.keys
    # Step 5: MSL (protocols.md §13.2) -> 0A.
    if not meets_msl(spi.spi1, application.profile.msl):
        return reject(
            ResponseStatus.INSUFFICIENT_SECURITY_LEVEL,
            f"SPI1 {spi.spi1:02x} below TAR {tar.hex()} MSL {application.profile.msl:02x}",
        )
    # Steps 6-7: decipher (05) and verify the checksum (01).
    try:
        # The keys open_command_packet(header, keys) would resolve, resolved once in step 4.
        opened = open_command(header, check.cipher_key if spi.ciphering else None, check.checksum_key)
    except SecurityRejection as exc:
        return reject(exc.response_status, str(exc))
    if opened.checksum_valid is False:
        return reject(ResponseStatus.RC_CC_DS_FAILED, f"TAR {tar.hex()}: RC/CC/DS mismatch (TS 102 225 §5.1)")
    authenticated = spi.integrity is IntegrityMode.CC and opened.checksum_valid is True
    echoed = opened.cntr if (authenticated or not spi.ciphering) else 0
    # Step 8: counter (TS 102 225 §5.1.1 SPI1 b5b4, protocols.md §5).
    counter_key = (kvn, tar)
    stored = counters.get(counter_key, 0)
    mode = spi.counter_mode
    verdict = check_counter(mode, stored, opened.cntr)
    if verdict is not CounterVerdict.ACCEPT:
        status = verdict.response_status
        assert status is not None
        return reject(
            status,
            f"TAR {tar.hex()}: CNTR {opened.cntr:#012x} refused against stored "
            f"{stored:#012x} (mode {mode.name})",
            cntr=echoed,
            authenticated=authenticated,
            opened=opened,
            application=application,
            keys=keys,
            counter_key=counter_key,
        )
    new = counter_after(mode, stored, opened.cntr, update_on_no_check=options.counter_update_on_no_check)
    return SecurityVerdict(  # positional: this runs for every accepted packet
        ResponseStatus.POR_OK,
        "accepted",
        spi,
        header.kic,
        header.kid,
        tar,
        echoed,
        authenticated,
        header,
        opened,
        application,
        keys,
        counter_key,
        new if new != stored else None,
        check.por,
    )


def _por_checksum_length(header: CommandHeader) -> int | None:
    # Same checksum length as the command when both use the same integrity mode (AES-CMAC 4 or 8).
    spi = header.spi
    n = header.chl - MIN_CHL
    return n if n and spi.por_integrity is spi.integrity else None


def por_wanted(spi: Spi | None, status: int, script_failed: bool, options: CardOptions) -> bool:
    """SPI2 b2b1 (TS 102 225 §5.1.1): 01 always, 10 on error, 00/11 never."""
    if spi is None:
        return False
    if spi.por is PorRequest.ALWAYS:
        return True
    if spi.por is PorRequest.ON_ERROR:
        return status != ResponseStatus.POR_OK or (
            script_failed and options.por_on_error_includes_script_failure
        )
    return False


def seal_por(verdict: SecurityVerdict, status: int, data: bytes, options: CardOptions) -> bytes:
    """The PoR TP-UD (``02 71 00`` first). Status 00 / 0B are secured as SPI2 asks; error
    statuses follow ``error_por_style`` and the rules of the module docstring."""
    assert verdict.spi is not None
    spi = verdict.spi
    secure = status in (ResponseStatus.POR_OK, ResponseStatus.ACTUAL_RESPONSE_BY_SMS_SUBMIT)
    cntr = verdict.cntr
    if not secure:
        style = options.error_por_style
        counter_error = status in (
            ResponseStatus.CNTR_LOW,
            ResponseStatus.CNTR_HIGH,
            ResponseStatus.CNTR_BLOCKED,
        )
        if style is ErrorPorStyle.SJA2:
            cntr = 0
            if counter_error:
                status = ResponseStatus.UNIDENTIFIED_SECURITY_ERROR
        elif style is ErrorPorStyle.SECURED:
            secure = counter_error and verdict.authenticated
        data = b""  # TS 102 225 §5.2: no script ran, no additional data
    response = ResponsePacket(verdict.tar, cntr, status, data)
    if secure and verdict.keys is not None and verdict.header is not None:
        resolved = verdict.por_keys
        if resolved is None:
            resolved = por_keys(
                spi,
                verdict.kic,
                verdict.kid,
                verdict.keys,
                checksum_length=_por_checksum_length(verdict.header),
            )
        cipher_key, checksum_key = resolved
        return seal_response(response, cipher_key, checksum_key, padding_byte=options.por_padding)
    return seal_response(response, None, None)

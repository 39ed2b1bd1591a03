"""SMPP 3.4 wire codes: command_status (§5.1.3) and command_id (§5.1.2).

Both are ``IntEnum``\\ s carrying the spec's names, so a status read off the wire
prints as ``ESME_RINVBNDSTS`` in logs, and ``CommandId.SUBMIT_SM.name.lower()``
is the spec's command name.  ``ESME_RINVDCS`` (0x104) comes from SMPP 5.0
(§4.7.6, Table 4-45); pySim-smpp2sim answers it for a non-8-bit data_coding.

Glossary: ESME external short message entity (the OTA platform); SMSC short
message service centre (our emulator); PDU protocol data unit.
"""

from __future__ import annotations

from enum import IntEnum

# SMPP 3.4 §5.1.2: a response's command_id is its request's with bit 31 set.
RESPONSE_BIT = 0x80000000


class CommandStatus(IntEnum):
    """SMPP 3.4 §5.1.3, Table 5-2 (plus ESME_RINVDCS from SMPP 5.0)."""

    ESME_ROK = 0x00000000
    ESME_RINVMSGLEN = 0x00000001
    ESME_RINVCMDLEN = 0x00000002
    ESME_RINVCMDID = 0x00000003
    ESME_RINVBNDSTS = 0x00000004
    ESME_RALYBND = 0x00000005
    ESME_RSYSERR = 0x00000008
    ESME_RINVSRCADR = 0x0000000A
    ESME_RINVDSTADR = 0x0000000B
    ESME_RINVMSGID = 0x0000000C
    ESME_RBINDFAIL = 0x0000000D
    ESME_RINVPASWD = 0x0000000E
    ESME_RINVSYSID = 0x0000000F
    ESME_RMSGQFUL = 0x00000014
    ESME_RINVSERTYP = 0x00000015
    ESME_RINVESMCLASS = 0x00000043
    ESME_RSUBMITFAIL = 0x00000045
    ESME_RINVSRCTON = 0x00000048
    ESME_RINVSRCNPI = 0x00000049
    ESME_RINVDSTTON = 0x00000050
    ESME_RINVDSTNPI = 0x00000051
    ESME_RINVSYSTYP = 0x00000053
    ESME_RTHROTTLED = 0x00000058
    ESME_RINVSCHED = 0x00000061
    ESME_RINVEXPIRY = 0x00000062
    ESME_RINVOPTPARSTREAM = 0x000000C0
    ESME_ROPTPARNOTALLWD = 0x000000C1
    ESME_RINVPARLEN = 0x000000C2
    ESME_RMISSINGOPTPARAM = 0x000000C3
    ESME_RINVOPTPARAMVAL = 0x000000C4
    ESME_RDELIVERYFAILURE = 0x000000FE
    ESME_RUNKNOWNERR = 0x000000FF
    ESME_RINVDCS = 0x00000104  # SMPP 5.0 §4.7.6


class CommandId(IntEnum):
    """SMPP 3.4 §5.1.2, Table 5-1."""

    BIND_RECEIVER = 0x00000001
    BIND_TRANSMITTER = 0x00000002
    QUERY_SM = 0x00000003
    SUBMIT_SM = 0x00000004
    DELIVER_SM = 0x00000005
    UNBIND = 0x00000006
    REPLACE_SM = 0x00000007
    CANCEL_SM = 0x00000008
    BIND_TRANSCEIVER = 0x00000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    SUBMIT_MULTI = 0x00000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    GENERIC_NACK = 0x80000000
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM_RESP = 0x80000005
    UNBIND_RESP = 0x80000006
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER_RESP = 0x80000009
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI_RESP = 0x80000021
    DATA_SM_RESP = 0x80000103


def status_name(command_status: int) -> str:
    """The spec's name (``ESME_RTHROTTLED``), or ``unknown`` for a value it does not define."""
    try:
        return CommandStatus(command_status).name
    except ValueError:
        return "unknown"


def command_name(command_id: int) -> str:
    """The spec's lower-case name (``submit_sm_resp``), or hex for an unknown id."""
    try:
        return CommandId(command_id).name.lower()
    except ValueError:
        return f"command_id_{command_id:#010x}"

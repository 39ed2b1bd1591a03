"""SMPP 3.4 for the OTA simulator: wire codes, PDU codec, framing and a sans-I/O session.

Modules: command_status (CommandStatus, CommandId), pdu_codec (dataclasses,
encode_pdu, decode_pdu, DeliveryReceipt), framing (PduFramer), events,
session (SmppSession).  Glossary: SMPP short message peer-to-peer protocol.
"""

#!/usr/bin/env node
// npm smpp (farhadi/node-smpp 0.5.1) as a third-party SMSC for the OTA server's ESME.
// Used by tests/interop/test_node_smpp.py, which plays the SIM cards itself.
//
//   node smsc.js SYSTEM_ID PASSWORD
//
// stdout, one JSON object per line:
//   {"event": "listening", "port": P}                      once, listening on 127.0.0.1:P (port 0 = free)
//   {"event": "bind", "system_id": ..., "status": N}       each bind_transceiver (0 = accepted)
//   {"event": "submit_sm", "destination_addr": ..., "source_addr": ..., "esm_class": N,
//    "protocol_id": N, "data_coding": N, "registered_delivery": N, "short_message": HEX}
//                                                          HEX = the whole UD: UDHL + UDH + packet
//   {"event": "deliver_sm_resp", "command_status": N}      the ESME's answer to each PoR
// stdin, one line per PoR:  MSISDN HEX   (HEX = the 03.48 response packet from RPL on)
//   -> deliver_sm source MSISDN (TON 1, NPI 1) to the last submitter's source_addr, esm_class 0x40,
//      PID 0x7F, DCS 0xF6, short_message in node-smpp's {udh, message} form with udh = 02 71 00.
'use strict';

const readline = require('readline');
const smpp = require('smpp');

const [systemId, password] = process.argv.slice(2);
const sessions = new Set();
const lastSource = new Map(); // MSISDN -> submit_sm source_addr (the platform)

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// node-smpp decodes a UDHI short_message into {udh: [IE...] (no UDHL octet), message}: rebuild the UD.
function userData(pdu) {
  const sm = pdu.short_message;
  if (Buffer.isBuffer(sm)) return sm;
  const message = Buffer.isBuffer(sm.message) ? sm.message : Buffer.from(sm.message || '', 'latin1');
  if (!sm.udh || !sm.udh.length) return message;
  const ies = Buffer.concat(sm.udh);
  return Buffer.concat([Buffer.from([ies.length]), ies, message]);
}

const server = smpp.createServer((session) => {
  sessions.add(session);
  session.on('close', () => sessions.delete(session));
  session.on('error', () => sessions.delete(session));
  session.on('bind_transceiver', (pdu) => {
    const ok = pdu.system_id === systemId && pdu.password === password;
    const status = ok ? smpp.ESME_ROK : smpp.ESME_RBINDFAIL;
    out({ event: 'bind', system_id: pdu.system_id, status });
    session.send(pdu.response({ command_status: status, system_id: 'NODESMSC' }));
  });
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    session.close();
  });
  let next = 0;
  session.on('submit_sm', (pdu) => {
    next += 1;
    session.send(pdu.response({ message_id: 'N' + next }));
    lastSource.set(pdu.destination_addr, pdu.source_addr);
    out({
      event: 'submit_sm',
      destination_addr: pdu.destination_addr,
      source_addr: pdu.source_addr,
      esm_class: pdu.esm_class,
      protocol_id: pdu.protocol_id,
      data_coding: pdu.data_coding,
      registered_delivery: pdu.registered_delivery,
      short_message: userData(pdu).toString('hex'),
    });
  });
});

server.listen(Number(process.env.SMSC_PORT || 0), '127.0.0.1', () => {
  out({ event: 'listening', port: server.address().port });
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [msisdn, hex] = line.trim().split(/\s+/);
  if (!msisdn || !hex) return;
  const session = [...sessions][0];
  if (!session) {
    out({ event: 'error', detail: 'no ESME bound for ' + msisdn });
    return;
  }
  session.deliver_sm(
    {
      source_addr_ton: 1,
      source_addr_npi: 1,
      source_addr: msisdn,
      dest_addr_ton: 1,
      dest_addr_npi: 1,
      destination_addr: lastSource.get(msisdn) || '',
      esm_class: 0x40,
      protocol_id: 0x7f,
      data_coding: 0xf6,
      short_message: { udh: Buffer.from('027100', 'hex'), message: Buffer.from(hex, 'hex') },
    },
    (resp) => out({ event: 'deliver_sm_resp', command_status: resp.command_status }),
  );
}).on('close', () => {
  for (const session of sessions) session.close();
  server.close();
  process.exit(0);
});

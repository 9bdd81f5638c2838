/**
 * Core's PN53x controller and command layer over the USB link, as scripted conversations: readers.md §6 vectors
 * 4 and 6–14 for the PN533, the start-up sequence, target decoding and the status table.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  ErrorCode,
  PN531,
  PN532,
  PN533,
  Pn53xController,
  Pn53xModulation,
  inDataExchangeCommand,
  inListPassiveTargetCommand,
  parseInListPassiveTarget,
  pn53xCascadeUid,
  pn53xStatusError,
  pn53xTimeoutIndex,
  pn53xTimeoutMs,
  rfTimingsCommand,
  stripCrcA,
  crcA,
  type Pn53xTypeATarget,
} from '@tapline/core';
import { silentLogger } from '@tapline/core';
import { startPn533 } from '../src/open.js';
import type { Pn533UsbLink } from '../src/usb-link.js';
import { ACK, CMD, RSP, ScriptedUsbDevice, hex, scriptedLink } from './support/scripted-usb.js';

const links: Pn533UsbLink[] = [];
function chip(usb: ScriptedUsbDevice): { link: Pn533UsbLink; pn: Pn53xController } {
  const link = scriptedLink(usb);
  links.push(link);
  return { link, pn: new Pn53xController(link, PN533) };
}

afterEach(async () => {
  for (const link of links.splice(0)) await link.close();
});

/** One scripted command: the host's `D4 <cmd>`, the chip's ACK and `D5 <rsp>`. */
const step = (cmd: string, rsp: string) => ({ write: CMD(cmd), reply: [ACK(), RSP(rsp)] });

describe('Pn53xController on a PN533', () => {
  it('vector 4: an answer with the wrong response code is a PROTOCOL_ERROR', async () => {
    const usb = new ScriptedUsbDevice([step('00 31 32 33', '02 34 35 36')]);
    await expect(chip(usb).pn.diagnose(0x31, hex('32 33'))).rejects.toMatchObject({
      code: ErrorCode.ProtocolError,
      message: expect.stringContaining('Diagnose'),
    });
  });

  it('vector 6: GetFirmwareVersion of a PN533 v2.7', async () => {
    const usb = new ScriptedUsbDevice([
      { write: hex('00 00 FF 02 FE D4 02 2A 00'), reply: [ACK(), hex('00 00 FF 06 FA D5 03 33 02 07 07 E5 00')] },
    ]);
    await expect(chip(usb).pn.getFirmwareVersion()).resolves.toEqual({
      ic: 0x33,
      version: 2,
      revision: 7,
      support: 7,
      text: 'PN533 v2.7',
    });
    usb.assertDone();
  });

  it('vector 7: the start-up sequence (ACK, GetFirmwareVersion, RF configuration), byte for byte', async () => {
    const usb = new ScriptedUsbDevice([
      { write: ACK() },
      step('02', '03 33 02 07 07'),
      step('12 14', '13'),
      step('32 01 02', '33'),
      step('32 02 00 0B 0A', '33'),
      step('32 04 00', '33'),
      step('32 05 01 00 01', '33'),
      step('32 0A 5A F4 3F 11 4D 85 61 6F 26 62 87', '33'),
      step('32 0B 6A FF 3F 10 41 85 61 6F', '33'),
      step('32 0C FF 04 85', '33'),
      step('32 0D 85 15 8A 85 0A B2 85 04 DA', '33'),
    ]);
    const { link, pn } = chip(usb);
    await expect(startPn533(link, pn, silentLogger)).resolves.toMatchObject({ ic: 0x33, text: 'PN533 v2.7' });
    usb.assertDone();
  });

  it('vector 7: start-up survives a first GetFirmwareVersion that gets no ACK', async () => {
    const usb = new ScriptedUsbDevice([
      { write: ACK() },
      { write: CMD('02') },
      { write: ACK() },
      step('02', '03 33 02 07 07'),
      step('12 14', '13'),
      ...['32 01 02', '32 02 00 0B 0A', '32 04 00', '32 05 01 00 01'].map((c) => step(c, '33')),
      ...PN533.analogSettings.map((s) => ({
        write: CMD(`32 ${Buffer.from([s.item, ...s.data]).toString('hex')}`),
        reply: [ACK(), RSP('33')],
      })),
    ]);
    const { link, pn } = chip(usb);
    await expect(startPn533(link, pn, silentLogger)).resolves.toMatchObject({ ic: 0x33 });
    usb.assertDone();
  });

  it('vector 7: the EEPROM probe answer D5 07 FF (status ≠ 00) means "no EEPROM"', async () => {
    const usb = new ScriptedUsbDevice([{ write: CMD('06 A0 00'), reply: [ACK(), RSP('07 FF')] }]);
    await expect(chip(usb).pn.readRegisters([0xa000])).rejects.toMatchObject({
      code: ErrorCode.ProtocolError,
      details: { chipStatus: 0xff },
    });
  });

  it('vector 8: no Type A target, and SENS_REQ 26 still in the FIFO (PN533 status byte)', async () => {
    const usb = new ScriptedUsbDevice([step('4A 01 00', '4B 00'), step('06 63 39', '07 00 26')]);
    const { pn } = chip(usb);
    await expect(pn.listPassiveTargets(Pn53xModulation.TypeA106)).resolves.toEqual([]);
    await expect(pn.readRegisters([0x6339])).resolves.toEqual(hex('26'));
    usb.assertDone();
  });

  it('vector 9: a Type 2 tag (SENS_RES 0044, SAK 00, UID 04 16 C6 C2 D7 38 81), then RX-CRC off', async () => {
    const usb = new ScriptedUsbDevice([
      step('4A 01 00', '4B 01 01 00 44 00 07 04 16 C6 C2 D7 38 81'),
      step('06 63 03', '07 00 FF'),
      step('08 63 03 7F', '09 00'),
    ]);
    const { pn } = chip(usb);
    const [target] = await pn.listPassiveTargets(Pn53xModulation.TypeA106);
    expect(target).toEqual({
      kind: 'iso14443a',
      tg: 1,
      sensRes: 0x0044,
      atqa: hex('44 00'),
      sak: 0x00,
      uid: hex('04 16 C6 C2 D7 38 81'),
      isoDep: false,
    });
    const [rxMode] = await pn.readRegisters([0x6303]);
    expect(rxMode).toBe(0xff);
    await pn.writeRegisters([{ address: 0x6303, value: rxMode! & 0x7f }]);
    usb.assertDone();
  });

  it('vector 10: TT2 READ page 0 through InCommunicateThru, CRC_A checked on the host', async () => {
    const page = '00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F';
    const usb = new ScriptedUsbDevice([
      step('06 63 02 63 03 63 05', '07 00 00 00 00'),
      step('08 63 02 00 63 03 00 63 05 40', '09 00'),
      step('32 02 0A 0B 0F', '33'),
      step('42 30 00', `43 00 ${page} 77 F5`),
      step('42 30 00', `43 00 ${page} 00 00`),
    ]);
    const { pn } = chip(usb);
    await expect(pn.readRegisters([0x6302, 0x6303, 0x6305])).resolves.toEqual(hex('00 00 00'));
    await pn.writeRegisters([
      { address: 0x6302, value: 0x00 },
      { address: 0x6303, value: 0x00 },
      { address: 0x6305, value: 0x40 },
    ]);
    await pn.rfConfiguration(0x02, hex('0A 0B 0F'));
    expect(rfTimingsCommand(0x0b, 0x0f, 0x0a)).toEqual(hex('D4 32 02 0A 0B 0F'));
    expect(stripCrcA(await pn.communicateThru(hex('30 00')))).toEqual(hex(page));
    const answer = await pn.communicateThru(hex('30 00'));
    expect(() => stripCrcA(answer)).toThrow(
      expect.objectContaining({ code: ErrorCode.ProtocolError, details: expect.objectContaining({ reason: 'crc_a' }) }),
    );
    usb.assertDone();
  });

  it('vector 11: a Jewel target and its RID over InDataExchange; register reads carry the PN533 status', async () => {
    const usb = new ScriptedUsbDevice([
      step('4A 01 00', '4B 00'),
      step('06 63 39', '07 00 93'),
      step('4A 01 04', '4B 01 01 0C 00 B2 56 54 00'),
      step('40 01 78 00 00 00 00 00 00', '41 00 11 48 B2 56 54 00'),
    ]);
    const { pn } = chip(usb);
    await expect(pn.listPassiveTargets(Pn53xModulation.TypeA106)).resolves.toEqual([]);
    await expect(pn.readRegisters([0x6339])).resolves.toEqual(hex('93'));
    await expect(pn.listPassiveTargets(Pn53xModulation.Jewel106)).resolves.toEqual([
      { kind: 'jewel', tg: 1, sensRes: 0x0c00, jewelId: hex('B2 56 54 00') },
    ]);
    await expect(pn.dataExchange(1, hex('78 00 00 00 00 00 00'))).resolves.toEqual(hex('11 48 B2 56 54 00'));
    usb.assertDone();
  });

  it('vector 14: InDataExchange and InCommunicateThru, and status 01 as TIMEOUT', async () => {
    const usb = new ScriptedUsbDevice([
      step('40 01 31 32', '41 00 AA BB'),
      step('40 01 31 32', '41 01'),
      step('42 31 32', '43 00 AA BB'),
      step('42 31 32', '43 01'),
    ]);
    const { pn } = chip(usb);
    await expect(pn.dataExchange(1, hex('31 32'))).resolves.toEqual(hex('AA BB'));
    await expect(pn.dataExchange(1, hex('31 32'))).rejects.toMatchObject({
      code: ErrorCode.Timeout,
      details: { chipStatus: '0x01', chipError: 'timeout', command: 'InDataExchange' },
    });
    await expect(pn.communicateThru(hex('31 32'))).resolves.toEqual(hex('AA BB'));
    await expect(pn.communicateThru(hex('31 32'))).rejects.toMatchObject({ code: ErrorCode.Timeout });
    usb.assertDone();
  });

  it('vectors 18 and 19: the Type 2 and Type 4B command payloads', () => {
    expect(inListPassiveTargetCommand(0x00)).toEqual(hex('D4 4A 01 00'));
    expect(inDataExchangeCommand(1, hex('30 04'))).toEqual(hex('D4 40 01 30 04'));
    expect(inDataExchangeCommand(1, hex('A2 04 00 00 00 00'))).toEqual(hex('D4 40 01 A2 04 00 00 00 00'));
    expect(inDataExchangeCommand(1, hex('A2 03 E1 10 06 00'))).toEqual(hex('D4 40 01 A2 03 E1 10 06 00'));
    expect(inListPassiveTargetCommand(0x03, { initiatorData: hex('00') })).toEqual(hex('D4 4A 01 03 00'));
    expect(inDataExchangeCommand(1, hex('00 A4 04 00 08 31 54 49 43 2E 49 43 41'))).toEqual(
      hex('D4 40 01 00 A4 04 00 08 31 54 49 43 2E 49 43 41'),
    );
    expect(inDataExchangeCommand(1, hex('00 B2 01 04 1D'))).toEqual(hex('D4 40 01 00 B2 01 04 1D'));
  });

  it('follows a chained answer (MI) with an empty InDataExchange', async () => {
    const usb = new ScriptedUsbDevice([
      step('40 01 00 B0 00 00 00', '41 40 01 02 03'),
      step('40 01', '41 00 04 90 00'),
    ]);
    await expect(chip(usb).pn.dataExchange(1, hex('00 B0 00 00 00'))).resolves.toEqual(hex('01 02 03 04 90 00'));
    usb.assertDone();
  });

  it('refuses what a PN533 does not have, without sending anything', async () => {
    const usb = new ScriptedUsbDevice();
    const { pn } = chip(usb);
    await expect(pn.samConfiguration()).rejects.toMatchObject({ code: ErrorCode.UnsupportedCapability });
    await expect(pn.powerDown(0x88)).rejects.toMatchObject({ code: ErrorCode.UnsupportedCapability });
    await expect(pn.listPassiveTargets(0x05)).rejects.toMatchObject({ code: ErrorCode.UnsupportedCapability });
    await expect(pn.listPassiveTargets(0x00, { maxTargets: 2 })).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
    expect(usb.written).toEqual([]);
  });
});

describe('PN53x command layer', () => {
  it('decodes an ISO-DEP Type A target with its ATS (length byte dropped) and a 7-byte UID', () => {
    const data = hex('01 01 03 44 20 07 04 A1 B2 C3 D4 E5 F6 06 77 77 71 02 80');
    const [target] = parseInListPassiveTarget(data, 0x00) as Pn53xTypeATarget[];
    expect(target).toMatchObject({ atqa: hex('44 03'), sak: 0x20, ats: hex('77 77 71 02 80'), isoDep: true });
  });

  it('decodes Type B (PUPI, ATTRIB_RES) and FeliCa (IDm, PMm, system code) targets', () => {
    const b = parseInListPassiveTarget(hex('01 01 50 11 22 33 44 00 00 00 00 00 81 80 01 00'), 0x03);
    expect(b[0]).toMatchObject({ kind: 'iso14443b', pupi: hex('11 22 33 44'), attribRes: hex('00'), isoDep: true });
    const f = parseInListPassiveTarget(hex('01 01 14 01 01 2E 3D 4C 5B 6A 79 88 01 20 22 04 27 67 4E FF 12 FC'), 0x01);
    expect(f[0]).toMatchObject({
      kind: 'felica',
      bitRate: 212,
      idm: hex('01 2E 3D 4C 5B 6A 79 88'),
      systemCode: hex('12 FC'),
    });
  });

  it('rejects truncated or overlong target data with PROTOCOL_ERROR', () => {
    for (const bad of ['01 01 00 44 00 07 04 16', '01 01 00 44 00 04 01 02 03 04 99', '03', '01 01 50']) {
      expect(() => parseInListPassiveTarget(hex(bad), bad.startsWith('01 01 50') ? 0x03 : 0x00)).toThrow(
        expect.objectContaining({ code: ErrorCode.ProtocolError }),
      );
    }
  });

  it('maps chip status codes to typed errors', () => {
    expect(pn53xStatusError(0x01, 0x40).code).toBe(ErrorCode.Timeout);
    expect(pn53xStatusError(0x02, 0x42).code).toBe(ErrorCode.ProtocolError);
    expect(pn53xStatusError(0x14, 0x40).code).toBe(ErrorCode.AuthenticationFailed);
    expect(pn53xStatusError(0x2b, 0x40).code).toBe(ErrorCode.TagLost);
    expect(pn53xStatusError(0x18, 0x40).code).toBe(ErrorCode.UnsupportedCapability);
    expect(pn53xStatusError(0x3e, 0x40)).toMatchObject({
      code: ErrorCode.ProtocolError,
      details: { chipError: 'unknown' },
    });
  });

  it('knows the models apart as data', () => {
    expect([PN531.registerStatusByte, PN532.registerStatusByte, PN533.registerStatusByte]).toEqual([
      false,
      false,
      true,
    ]);
    expect(PN533.modulations).toContain(Pn53xModulation.TypeB847);
    expect(PN532.modulations).not.toContain(Pn53xModulation.TypeB212);
    expect([PN531.extendedFrames, PN533.samConfiguration, PN532.samConfiguration]).toEqual([false, false, true]);
  });

  it('converts timeouts, cascades UIDs and computes CRC_A', () => {
    expect(pn53xTimeoutMs(0x0b)).toBeCloseTo(102.4);
    expect(pn53xTimeoutIndex(51.2)).toBe(0x0a);
    expect(pn53xTimeoutIndex(100_000)).toBe(16);
    expect(pn53xCascadeUid(hex('04 16 C6 C2 D7 38 81'))).toEqual(hex('88 04 16 C6 C2 D7 38 81'));
    expect(pn53xCascadeUid(hex('01 02 03 04'))).toEqual(hex('01 02 03 04'));
    expect(crcA(hex('30 00'))).toEqual(hex('02 A8'));
    expect(stripCrcA(hex('0A'))).toEqual(hex('0A'));
  });
});

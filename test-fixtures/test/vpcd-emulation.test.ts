import { describe, expect, it } from 'vitest';
import { Capability, fromHex, parseContactlessAtr, toHex } from '@tapline/core';
import { createVirtualChip, type VirtualChip } from '../src/index.js';
import {
  acr1252Emulation,
  acr122Emulation,
  atsHistoricalBytes,
  synthesiseAtr,
  utrust3720Emulation,
  type ReaderEmulation,
} from '../src/vpcd/index.js';

// The reader emulations as pure functions: (state, chip, C-APDU) → (state, R-APDU). Byte-exact against the vectors in
// readers.md where one applies (§1.1, §4, §6, §7.4).

/** Sends APDUs one after another through `emulation`, threading its state; returns the answers as hex. */
function session<S>(emulation: ReaderEmulation<S>, chip: VirtualChip) {
  let state = emulation.initialState;
  return {
    send(hex: string): string {
      const step = emulation.transmit(state, chip, fromHex(hex));
      state = step.state;
      return toHex(step.response);
    },
    get state(): S {
      return state;
    },
  };
}

/** An NTAG215 with the UID of readers.md §6 vector 9 (SENS_RES 0044, SAK 00). */
const vectorNtag = () => createVirtualChip('ntag215', { uid: fromHex('0416C6C2D73881') });

describe('synthesised ATRs (readers.md §7.4)', () => {
  it('gives a Type 2 tag the Part 3 storage ATR with SS 03 and card name 00 03 (Ultralight)', () => {
    const ntag = createVirtualChip('ntag215');
    expect(toHex(acr122Emulation.atr(ntag)!)).toBe('3b8f8001804f0ca0000003060300030000000068');
    expect(toHex(acr1252Emulation.atr(ntag)!)).toBe(toHex(ntag.info.atr!));
    expect(toHex(utrust3720Emulation.atr(ntag)!)).toBe(toHex(ntag.info.atr!));
  });

  it('names a MIFARE Classic 1K by its SAK: the ACR122L manual example, TCK 6A included', () => {
    const classic: VirtualChip = {
      info: { technology: 'iso14443a', uid: fromHex('01020304'), sak: 0x08, protocols: [] },
      handle: () => {
        throw new Error('silent');
      },
    };
    expect(toHex(acr122Emulation.atr(classic)!)).toBe('3b8f8001804f0ca000000306030001000000006a');
  });

  it('gives ISO-DEP chips 3B 8n 80 01 with the historical bytes of their ATS', () => {
    const spark2 = createVirtualChip('spark2');
    expect(toHex(atsHistoricalBytes(spark2.info.ats!))).toBe('80');
    expect(toHex(acr122Emulation.atr(spark2)!)).toBe('3b8180018080');
    const apex = createVirtualChip('apex');
    expect(toHex(acr1252Emulation.atr(apex)!)).toBe(toHex(apex.info.atr!));
    expect(parseContactlessAtr(acr1252Emulation.atr(apex)!)).toMatchObject({ kind: 'iso14443-4', checksumValid: true });
  });

  it('gives an ISO 15693 tag SS 0B on the uTrust 3720 F, and none at all on the PN532 and PN512 readers', () => {
    const spark1 = createVirtualChip('spark1');
    const atr = utrust3720Emulation.atr(spark1)!;
    expect(toHex(atr)).toBe(toHex(spark1.info.atr!));
    expect(parseContactlessAtr(atr)).toMatchObject({ kind: 'storage', standard: 0x0b, technology: 'iso15693' });
    expect(acr122Emulation.atr(spark1)).toBeUndefined();
    expect(acr1252Emulation.atr(spark1)).toBeUndefined();
  });

  it('uses the ACR122 card names for FeliCa (F0 11) and the Part 3 ones elsewhere (00 3B)', () => {
    const felica: VirtualChip = {
      info: { technology: 'felica', uid: fromHex('0102030405060708'), protocols: [Capability.Felica] },
      handle: () => new Uint8Array(0),
    };
    expect(toHex(synthesiseAtr(felica, { technologies: ['felica'], names: 'acr122' })!.subarray(12, 15))).toBe(
      '11f011',
    );
    expect(toHex(synthesiseAtr(felica, { technologies: ['felica'], names: 'part3' })!.subarray(12, 15))).toBe('11003b');
  });
});

describe('ACR122U emulation (readers.md §1, §5, §6)', () => {
  it('answers Get Data with the UID, Le rules and the ATS with its length byte', () => {
    const spark2 = createVirtualChip('spark2');
    const reader = session(acr122Emulation, spark2);
    const uid = toHex(spark2.info.uid);
    expect(reader.send('FFCA000000')).toBe(`${uid}9000`);
    expect(reader.send('FFCA000007')).toBe(`${uid}9000`);
    expect(reader.send('FFCA000004')).toBe('6c07');
    expect(reader.send('FFCA00000A')).toBe(`${uid}6282`);
    expect(reader.send('FFCA010000')).toBe('0677777102809000');
    expect(reader.send('FFCA020000')).toBe('6a81');
  });

  it('tunnels GetFirmwareVersion: FF 00 00 00 02 D4 02 → D5 03 32 01 06 07 90 00', () => {
    expect(session(acr122Emulation, vectorNtag()).send('FF00000002D402')).toBe('d503320106079000');
  });

  it('lists a Type 2 target as in §6 vector 9: D5 4B 01 01 00 44 00 07 04 16 C6 C2 D7 38 81', () => {
    expect(session(acr122Emulation, vectorNtag()).send('FF00000004D44A0100')).toBe(
      'd54b0101004400070416c6c2d738819000',
    );
  });

  it('finds no target for other modulations or another UID (§6 vectors 8 and 17: D5 4B 00)', () => {
    const reader = session(acr122Emulation, vectorNtag());
    expect(reader.send('FF00000005D44A010300')).toBe('d54b009000');
    expect(reader.send('FF0000000BD44A010001020304050607')).toBe('d54b009000');
    expect(reader.send('FF0000000BD44A01000416C6C2D73881')).toBe('d54b0101004400070416c6c2d738819000');
    expect(reader.send('FF0000000CD44A01000416C6C2D73881')).toBe('6700');
  });

  it('lists an ISO-DEP target with the ATS the PN532 fetched (TL first)', () => {
    const spark2 = createVirtualChip('spark2');
    const uid = toHex(spark2.info.uid);
    expect(session(acr122Emulation, spark2).send('FF00000004D44A0100')).toBe(`d54b010103442007${uid}0677777102809000`);
  });

  it('passes InCommunicateThru and InDataExchange frames to the chip (§6 vectors 10, 14, 18)', () => {
    const ntag = createVirtualChip('ntag215');
    const page0 = toHex(createVirtualChip('ntag215').handle(Capability.Iso14443aRaw, fromHex('3000')));
    const reader = session(acr122Emulation, ntag);
    expect(reader.send('FF00000004D4423000')).toBe(`d54300${page0}9000`);
    const page4 = toHex(createVirtualChip('ntag215').handle(Capability.Iso14443aRaw, fromHex('3004')));
    expect(reader.send('FF00000005D440013004')).toBe(`d54100${page4}9000`);
    // WRITE page 4 through InDataExchange, then read it back: the chip's state moves.
    expect(reader.send('FF00000009D44001A204DEADBEEF')).toBe('d541000a9000');
    expect(reader.send('FF00000005D440013004').slice(6, 14)).toBe('deadbeef');
    // A frame the tag does not answer: PN532 status 01 (timeout), as in vector 14's `41 01`.
    expect(reader.send('FF00000004D4423099')).toBe('d543019000');
    expect(reader.send('FF00000005D440023004')).toBe('d541279000');
  });

  it('sends ISO-DEP APDUs with InDataExchange, and raw I-blocks, RATS and DESELECT with InCommunicateThru', () => {
    const reader = session(acr122Emulation, createVirtualChip('spark2'));
    expect(reader.send('FF00000010D44001' + '00A4040007D276000085010100')).toBe('d541009000' + '9000');
    expect(reader.send('FF00000004D442E050')).toBe('d543000677777102809000');
    expect(reader.send('FF0000000FD44202' + '00A4040007D276000085010100')).toBe('d54300029000' + '9000');
    expect(reader.send('FF00000003D442C2')).toBe('d54300c29000');
  });

  it('switches the field with RFConfiguration: off, exchanges time out; on, the chip powers up', () => {
    const reader = session(acr122Emulation, createVirtualChip('ntag215'));
    expect(reader.send('FF00000004D4320100')).toBe('d5339000');
    expect(reader.state.rfOn).toBe(false);
    expect(reader.send('FF00000005D440013004')).toBe('d541019000');
    expect(reader.send('FFCA000000')).toMatch(/9000$/);
    expect(reader.send('FF00000004D4320101')).toBe('d5339000');
    expect(reader.send('FF00000006D43205000000')).toBe('d5339000');
    expect(reader.send('FF00000005D440013004')).toMatch(/^d54100/);
  });

  it('rejects unknown or malformed PN532 commands with 63 7F', () => {
    const reader = session(acr122Emulation, createVirtualChip('ntag215'));
    expect(reader.send('FF00000002D4FE')).toBe('637f');
    expect(reader.send('FF00000002D502')).toBe('637f');
    expect(reader.send('FF00000003D44A01')).toBe('637f');
    expect(reader.send('FF000000')).toBe('6a81');
  });

  it('answers the reader pseudo-APDUs as nfcpy and libnfc expect them (§1.1, §6 vector 16)', () => {
    const reader = session(acr122Emulation, createVirtualChip('ntag215'));
    expect(reader.send('FF00480000')).toBe('41435231323255323033');
    expect(reader.send('FF00517F00')).toBe('907f');
    expect(reader.send('FF00400E0400000000')).toBe('9002');
    expect(reader.send('FF00400D0403000101')).toBe('9001');
    expect(reader.send('FF00400C0400000000')).toBe('9000');
    expect(reader.send('FF0052FF00')).toBe('9000');
  });

  it('reads and writes Type 2 pages with FF B0 / FF D6', () => {
    const ntag = createVirtualChip('ntag215');
    const page4 = toHex(createVirtualChip('ntag215').handle(Capability.Iso14443aRaw, fromHex('3004')));
    const reader = session(acr122Emulation, ntag);
    expect(reader.send('FFB0000410')).toBe(`${page4}9000`);
    expect(reader.send('FFB0000404')).toBe(`${page4.slice(0, 8)}9000`);
    expect(reader.send('FFD600050401020304')).toBe('9000');
    expect(reader.send('FFB0000504')).toBe('010203049000');
    expect(reader.send('FFD6000003010203')).toBe('6700');
    expect(reader.send('FFD600000401020304')).toBe('6300');
  });

  it('sends plain APDUs to an ISO-DEP chip, and answers 63 00 when the chip cannot take them', () => {
    expect(session(acr122Emulation, createVirtualChip('spark2')).send('00A4040007D276000085010100')).toBe('9000');
    expect(session(acr122Emulation, createVirtualChip('ntag215')).send('00A4040007D276000085010100')).toBe('6300');
  });
});

describe('ACR1252U emulation (readers.md §2, §4.1)', () => {
  it('runs a Part 3 transparent session to a Type 2 tag: start, switch to 14443-A layer 3, transceive, end', () => {
    const ntag = createVirtualChip('ntag215');
    const page4 = toHex(createVirtualChip('ntag215').handle(Capability.Iso14443aRaw, fromHex('3004')));
    const reader = session(acr1252Emulation, ntag);
    expect(reader.send('FFC20000028100')).toBe('c0030090009000');
    expect(reader.send('FFC20000028000')).toBe('c00300900080030100009000');
    expect(reader.send('FFC20002048F02000300')).toBe('c0030090008f01009000');
    expect(reader.send('FFC20001049502300400')).toBe(`c003009000920100960200009710${page4}9000`);
    expect(reader.send('FFC20000028200')).toBe('c0030090009000');
    expect(reader.state.session).toBe(false);
  });

  it('reports the 4-bit ACK of a WRITE with 4 valid bits, as a CRC error unless RX CRC checking is off', () => {
    const reader = session(acr1252Emulation, createVirtualChip('ntag215'));
    reader.send('FFC20000028100');
    expect(reader.send('FFC200010895' + '06A20401020304')).toBe('c003009000920104960201009701' + '0a9000');
    expect(reader.send('FFC200010C90020002' + '9506A20401020304' + '00')).toBe(
      'c003009000920104960200009701' + '0a9000',
    );
  });

  it('stops at the first failing object with C0 03 <object number> SW1 SW2, the APDU status staying 90 00', () => {
    const reader = session(acr1252Emulation, createVirtualChip('ntag215'));
    expect(reader.send('FFC20001049502300400')).toBe('c0030163019000');
    expect(reader.send('FFC20000028300')).toBe('c0030163019000');
    expect(reader.send('FFC200000481009900' + '00')).toBe('c003026a819000');
    expect(reader.state.session).toBe(true);
    expect(reader.send('FFC20001029501')).toBe('c0030167009000');
    expect(reader.send('FFC2000103950130')).toBe('c0030164019000');
    expect(reader.send('FFC20002048F02020000')).toBe('c0030163009000');
    expect(reader.send('FFC200000480008100')).toBe('c00300900080030100009000');
  });

  it('switches to layer 4 of an ISO-DEP chip with its ATR in 5F 51', () => {
    const spark2 = createVirtualChip('spark2');
    const reader = session(acr1252Emulation, spark2);
    reader.send('FFC20000028100');
    expect(reader.send('FFC20002048F02000400')).toBe(`c0030090005f5106${toHex(spark2.info.atr!)}9000`);
  });

  it('treats FF 00 00 00 as a FeliCa pass-through, never as a PN532 tunnel', () => {
    const reader = session(acr1252Emulation, createVirtualChip('ntag215'));
    expect(reader.send('FF00000004D44A0100')).toBe('6300');
    expect(reader.send('FF00000002D402')).toBe('6300');
    expect(reader.send('FF00400E0400000000')).toBe('9002');
  });
});

describe('uTrust 3720 F emulation (readers.md §3.2)', () => {
  it('returns the 8-byte ISO 15693 UID and refuses FF CA 01 for HF tags', () => {
    const spark1 = createVirtualChip('spark1');
    const reader = session(utrust3720Emulation, spark1);
    expect(reader.send('FFCA000000')).toBe(`${toHex(spark1.info.uid)}9000`);
    expect(reader.send('FFCA010000')).toBe('6a81');
  });

  it('passes FF FC ISO 15693 commands to a Spark 1 and strips the reply flags', () => {
    const spark1 = createVirtualChip('spark1');
    const reference = createVirtualChip('spark1');
    const reader = session(utrust3720Emulation, spark1);
    const blocks = toHex(reference.handle(Capability.Iso15693, fromHex('02230003')).subarray(1));
    expect(reader.send('FFFC00000323000300')).toBe(`${blocks}9000`);
    expect(reader.send('FFFC000002200000')).toBe(`${blocks.slice(0, 8)}9000`);
    const info = toHex(reference.handle(Capability.Iso15693, fromHex('022B')).subarray(1));
    expect(reader.send('FFFC0000012B00')).toBe(`${info}9000`);
    // The fixture signs the UID with a random nonce per chip: compare with the same chip's own answer.
    const signature = reader.send('FFFC000002BD0400');
    expect(signature).toBe(`${toHex(spark1.handle(Capability.Iso15693, fromHex('02BD04')).subarray(1))}9000`);
    expect(signature).toHaveLength(68);
    // INVENTORY: one slot, empty mask; the answer is DSFID and the UID in air order.
    const airUid = toHex(Uint8Array.from(spark1.info.uid).reverse());
    expect(reader.send('FFFC0000010100')).toBe(`00${airUid}9000`);
    // An error reply (block out of range) and a malformed request are 63 00.
    expect(reader.send('FFFC000002204000')).toBe('6300');
    expect(reader.send('FFFC0100012B00')).toBe('6a81');
  });

  it('passes whole frames with the Traverse APDU FF FD, flags included both ways', () => {
    const spark1 = createVirtualChip('spark1');
    const reference = createVirtualChip('spark1');
    const reply = toHex(reference.handle(Capability.Iso15693, fromHex('022B')));
    expect(session(utrust3720Emulation, spark1).send('FFFD0A0102022B00')).toBe(`${reply}9000`);
  });

  it('reads one Type 2 page regardless of Le, and passes plain APDUs to ISO-DEP chips', () => {
    const ntag = createVirtualChip('ntag215');
    const page4 = toHex(createVirtualChip('ntag215').handle(Capability.Iso14443aRaw, fromHex('3004')));
    expect(session(utrust3720Emulation, ntag).send('FFB0000410')).toBe(`${page4.slice(0, 8)}9000`);
    expect(session(utrust3720Emulation, createVirtualChip('apex')).send('00A4040007D276000085010100')).toMatch(/9000$/);
    expect(session(utrust3720Emulation, ntag).send('FFFC0000012B00')).toBe('6a81');
  });
});

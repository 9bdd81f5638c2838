import { describe, expect, it, vi } from 'vitest';
import {
  ErrorCode,
  Iso15693Tag,
  TaplineError,
  buildIso15693Inventory,
  fromHex,
  genericPcscDriver,
  matchScore,
  toSpacedHex,
  type Reader,
} from '../src/index.js';
import {
  FAIL,
  HANG,
  nextTagEvent,
  scriptedPcsc,
  testDriverContext,
  type ScriptedPcscReader,
} from '../src/testing/index.js';

const hex = toSpacedHex;
const GET_UID = 'FF CA 00 00 00';
const UID = '04 A1 B2 C3 D4 E5 F6';
const SPARK1_UID = 'E0 04 01 18 00 9C 87 0C';
/** readers.md §7.4: storage cards (Ultralight; ICODE SLI under ISO 15693 part 3) and an ISO-DEP tag. */
const ATR_ULTRALIGHT = '3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 03 00 00 00 00 68';
const ATR_ICODE = '3B 8F 80 01 80 4F 0C A0 00 00 03 06 0B 00 14 00 00 00 00 77';
const ATR_DESFIRE = '3B 81 80 01 80 80';
const PROBE = 'FF C2 00 00 02 80 00 00';
const OK = 'C0 03 00 90 00';
const VERSION = `${OK} 80 03 01 00 00 90 00`;
const START = 'FF C2 00 00 02 81 00 00';
const END = 'FF C2 00 00 02 82 00 00';

function setup(name = 'Some Part3 Reader 00 00'): { slot: ScriptedPcscReader; open: () => Promise<Reader> } {
  const slot = scriptedPcsc().addReader(name);
  return { slot, open: () => genericPcscDriver.open(slot.device, testDriverContext({ timeoutMs: 300 })) };
}

async function arrive(reader: Reader, slot: ScriptedPcscReader, atr: string, ...steps: [string, string][]) {
  const next = nextTagEvent(reader);
  slot.insert(atr, ...steps);
  return next;
}

describe('genericPcscDriver', () => {
  it('declares the most it can do and leaves SAM slots and contact interfaces alone', () => {
    expect(genericPcscDriver.capabilities).toEqual(['iso14443a-raw', 'iso14443-4', 'iso15693']);
    const pcsc = scriptedPcsc();
    expect(matchScore(genericPcscDriver, pcsc.addReader('Some Reader 00 00').device)).toBe(1);
    expect(
      matchScore(genericPcscDriver, pcsc.addReader('ACS ACR1252 Dual Reader [ACR1252 Dual Reader SAM] 01 00').device),
    ).toBe(0);
    expect(
      matchScore(
        genericPcscDriver,
        pcsc.addReader('Identiv uTrust 4701 F Dual Interface Reader [uTrust 4701 F Contact Reader] (1) 00 00').device,
      ),
    ).toBe(0);
    expect(matchScore(genericPcscDriver, pcsc.addReader('Identiv uTrust 3720 Contactless Reader 00 00').device)).toBe(
      1,
    );
  });
});

describe('the generic reader and PC/SC Part 3', () => {
  it('offers APDUs only until a probe found more, and never probes for ISO-DEP tags', async () => {
    const { slot, open } = setup();
    const reader = await open();
    expect([...reader.capabilities]).toEqual(['iso14443-4']);
    const tag = await arrive(reader, slot, ATR_DESFIRE, [GET_UID, `${UID} 90 00`]);
    expect(tag.protocols).toEqual(['iso14443-4']);
    expect(slot.sent).toEqual([GET_UID]);
    await reader.close();
    slot.assertDone();
  });

  it('probes once on a Type 2 tag, then reaches it with transparent exchange (raw READ)', async () => {
    const { slot, open } = setup();
    const reader = await open();
    const tag = await arrive(reader, slot, ATR_ULTRALIGHT, [GET_UID, `${UID} 90 00`], [PROBE, VERSION]);
    expect([...reader.capabilities]).toEqual(['iso14443a-raw', 'iso14443-4']);
    expect(tag.protocols).toEqual(['iso14443a-raw']);
    slot.expect(
      [START, `${OK} 90 00`],
      ['FF C2 00 02 04 8F 02 00 03 00', `${OK} 8F 01 00 90 00`],
      [
        'FF C2 00 01 0F 90 02 00 00 5F 46 04 50 C3 00 00 95 02 30 04 00',
        `${OK} 92 01 00 96 02 00 00 97 10 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F 90 00`,
      ],
      [END, `${OK} 90 00`],
    );
    expect(hex(await reader.transmit(tag, 'iso14443a-raw', fromHex('3004')))).toBe(
      '00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F',
    );
    await vi.waitFor(() => expect(slot.sent.at(-1)).toBe(END));
    // The next storage tag: no second probe.
    const left = nextTagEvent(reader, 'tag-left');
    slot.remove();
    await left;
    const again = await arrive(reader, slot, ATR_ULTRALIGHT, [GET_UID, `${UID} 90 00`]);
    expect(again.protocols).toEqual(['iso14443a-raw']);
    expect(slot.sent.filter((f) => f === PROBE)).toHaveLength(1);
    await reader.close();
    slot.assertDone();
  });

  it('offers ISO 15693 once the Part 3 reader reports an ISO 15693 tag, and carries INVENTORY and READ SIGNATURE', async () => {
    const { slot, open } = setup();
    const reader = await open();
    const tag = await arrive(reader, slot, ATR_ICODE, [GET_UID, `${SPARK1_UID} 90 00`], [PROBE, `${OK} 90 00`]);
    expect([...reader.capabilities]).toEqual(['iso14443a-raw', 'iso14443-4', 'iso15693']);
    expect(tag.technology).toBe('iso15693');
    expect(tag.protocols).toEqual(['iso15693']);
    expect(hex(buildIso15693Inventory())).toBe('26 01 00');
    const signature = Array.from({ length: 32 }, (_, i) => (i + 1).toString(16).padStart(2, '0')).join(' ');
    slot.expect(
      [START, `${OK} 90 00`],
      ['FF C2 00 02 04 8F 02 02 03 00', `${OK} 90 00`],
      [
        'FF C2 00 01 10 90 02 00 00 5F 46 04 A0 86 01 00 95 03 26 01 00 00',
        `${OK} 97 0A 00 00 0C 87 9C 00 18 01 04 E0 90 00`,
      ],
      // READ SIGNATURE, addressed: 22 BD 04 <UID LSB first>.
      [
        'FF C2 00 01 18 90 02 00 00 5F 46 04 A0 86 01 00 95 0B 22 BD 04 0C 87 9C 00 18 01 04 E0 00',
        `${OK} 97 21 00 ${signature} 90 00`,
      ],
      [END, `${OK} 90 00`],
    );
    const iso = Iso15693Tag.fromTag(tag);
    expect(hex((await iso.inventory()).uid)).toBe(SPARK1_UID);
    expect(hex((await iso.readSignature()).signature)).toBe(signature.toUpperCase());
    await vi.waitFor(() => expect(slot.sent.at(-1)).toBe(END));
    await reader.close();
    slot.assertDone();
  });

  it('remembers a reader that fails the probe as non-Part-3 and refuses raw frames without sending them', async () => {
    const { slot, open } = setup();
    const reader = await open();
    const tag = await arrive(reader, slot, ATR_ULTRALIGHT, [GET_UID, `${UID} 90 00`], [PROBE, '6A 81']);
    expect([...reader.capabilities]).toEqual(['iso14443-4']);
    expect(tag.protocols).toEqual([]);
    await expect(reader.transmit(tag, 'iso14443a-raw', fromHex('3004'))).rejects.toMatchObject({
      code: ErrorCode.UnsupportedCapability,
    });
    slot.remove();
    await arrive(reader, slot, ATR_ICODE, [GET_UID, `${SPARK1_UID} 90 00`]);
    expect(slot.sent.filter((f) => f === PROBE)).toHaveLength(1);
    await reader.close();
    slot.assertDone();
  });

  it('counts a refused transmit as an answer, but asks again after a probe that timed out', async () => {
    const refused = setup();
    const a = await refused.open();
    const failure = new TaplineError(ErrorCode.ProtocolError, 'The reader did not carry out the transmit.');
    const next = nextTagEvent(a);
    refused.slot.insert(ATR_ULTRALIGHT, [GET_UID, `${UID} 90 00`], [PROBE, FAIL(failure)]);
    expect((await next).protocols).toEqual([]);
    await a.close();
    refused.slot.assertDone();

    const slow = setup();
    const b = await slow.open();
    const first = nextTagEvent(b);
    slow.slot.insert(ATR_ULTRALIGHT, [GET_UID, `${UID} 90 00`], [PROBE, HANG]);
    expect((await first).protocols).toEqual([]);
    slow.slot.remove();
    const second = await arrive(b, slow.slot, ATR_ULTRALIGHT, [GET_UID, `${UID} 90 00`], [PROBE, VERSION]);
    expect(second.protocols).toEqual(['iso14443a-raw']);
    await b.close();
    slow.slot.assertDone();
  });

  it('does not probe readers known to have no FF C2 (ACR122U)', async () => {
    const { slot, open } = setup('ACS ACR122U PICC Interface 00 00');
    const reader = await open();
    const tag = await arrive(reader, slot, ATR_ULTRALIGHT, [GET_UID, `${UID} 90 00`]);
    expect(tag.protocols).toEqual([]);
    expect(slot.sent).toEqual([GET_UID]);
    await reader.close();
  });
});

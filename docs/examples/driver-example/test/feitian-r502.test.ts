import { describe, expect, it, vi } from 'vitest';
import { ErrorCode, fromHex, hasErrorCode, matchScore, toHex } from '@tapline/core';
import { HANG, nextTagEvent, scriptedPcsc, testDriverContext } from '@tapline/core/testing';
import { feitianR502Driver } from '../src/index.js';

const NAME = 'Feitian R502 [R502 Contactless Reader] 00 00';
// The ATR pcsc-lite builds for an ISO-DEP tag (historical bytes from the ATS; `80` for NTAG 424 DNA and DESFire)…
const ATR_ISO_DEP = '3B 81 80 01 80 80';
// …and for a storage card (PC/SC part 3: RID A0 00 00 03 06, standard 03 = ISO 14443-A part 3).
const ATR_STORAGE = '3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 03 00 00 00 00 68';
const GET_UID = 'FF CA 00 00 00';
const UID_ANSWER = '04 A1 B2 C3 D4 E5 F6 90 00';
const SELECT_NDEF_APP = '00 A4 04 00 07 D2 76 00 00 85 01 01 00';
const GET_VERSION = '90 60 00 00 00';

function setup() {
  const pcsc = scriptedPcsc();
  const slot = pcsc.addReader(NAME);
  const open = () => feitianR502Driver.open(slot.device, testDriverContext());
  return { pcsc, slot, open };
}

describe('feitian-r502', () => {
  it('claims the contactless slot, not the contact slot', () => {
    const pcsc = scriptedPcsc();
    expect(matchScore(feitianR502Driver, pcsc.addReader(NAME).device)).toBe(60);
    expect(matchScore(feitianR502Driver, pcsc.addReader('Feitian R502 [R502 Contact Reader] 01 00').device)).toBe(0);
  });

  it('reads the UID on arrival and relays APDUs', async () => {
    const { slot, open } = setup();
    const reader = await open();
    slot.insert(ATR_ISO_DEP, [GET_UID, UID_ANSWER], [SELECT_NDEF_APP, '90 00']);

    const tag = await nextTagEvent(reader);
    expect(toHex(tag.uid)).toBe('04a1b2c3d4e5f6');
    expect(tag.technology).toBe('iso14443a');
    expect(tag.protocols).toEqual(['iso14443-4']);
    expect(toHex(await reader.transmit(tag, 'iso14443-4', fromHex(SELECT_NDEF_APP)))).toBe('9000');

    await reader.close();
    slot.assertDone();
    expect(slot.disconnects).toEqual(['leave']);
    expect(slot.openConnections).toBe(0);
  });

  it('fails an exchange in flight with TAG_LOST when the tag leaves, and releases the card', async () => {
    const { slot, open } = setup();
    const reader = await open();
    slot.insert(ATR_ISO_DEP, [GET_UID, UID_ANSWER], [GET_VERSION, HANG]);
    const tag = await nextTagEvent(reader);

    const pending = reader.transmit(tag, 'iso14443-4', fromHex(GET_VERSION), { timeoutMs: 5000 });
    await vi.waitFor(() => expect(slot.sent).toContain(GET_VERSION));
    slot.remove();

    await expect(pending).rejects.toSatisfy((error: unknown) => hasErrorCode(error, ErrorCode.TagLost));
    await vi.waitFor(() => expect(slot.openConnections).toBe(0));
    expect(slot.disconnects).toEqual(['reset']);
    await reader.close();
  });

  it('fails with TIMEOUT when the tag never answers', async () => {
    const { slot, open } = setup();
    const reader = await open();
    slot.insert(ATR_ISO_DEP, [GET_UID, UID_ANSWER], [GET_VERSION, HANG]);
    const tag = await nextTagEvent(reader);

    await expect(reader.transmit(tag, 'iso14443-4', fromHex(GET_VERSION), { timeoutMs: 50 })).rejects.toSatisfy(
      (error: unknown) => hasErrorCode(error, ErrorCode.Timeout),
    );
    await reader.close();
    expect(slot.openConnections).toBe(0);
  });

  it('refuses APDUs to a storage card and skips one whose UID cannot be read', async () => {
    const { slot, open } = setup();
    const reader = await open();
    slot.insert(ATR_STORAGE, [GET_UID, '6A 81']); // "function not supported"
    await vi.waitFor(() => expect(slot.disconnects).toEqual(['leave']));
    expect(reader.currentTag).toBeUndefined();

    slot.insert(ATR_STORAGE, [GET_UID, UID_ANSWER]);
    const tag = await nextTagEvent(reader);
    expect(tag.protocols).toEqual([]);
    await expect(reader.transmit(tag, 'iso14443-4', fromHex(SELECT_NDEF_APP))).rejects.toSatisfy((error: unknown) =>
      hasErrorCode(error, ErrorCode.UnsupportedCapability),
    );
    await reader.close();
    slot.assertDone();
    expect(slot.openConnections).toBe(0);
  });

  it('closes itself when the reader is unplugged', async () => {
    const { pcsc, slot, open } = setup();
    const reader = await open();
    slot.insert(ATR_ISO_DEP, [GET_UID, UID_ANSWER]);
    const tag = await nextTagEvent(reader);

    pcsc.removeReader(NAME);
    await vi.waitFor(() => expect(reader.closed).toBe(true));
    await expect(reader.transmit(tag, 'iso14443-4', fromHex(SELECT_NDEF_APP))).rejects.toSatisfy((error: unknown) =>
      hasErrorCode(error, ErrorCode.ReaderGone),
    );
    expect(slot.openConnections).toBe(0);
  });
});

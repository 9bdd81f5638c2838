import { describe, expect, it } from 'vitest';
import { ErrorCode, Pn53xController, fromHex, toSpacedHex, type Pn53xLinkOptions } from '@tapline/core';
import {
  ACR122_PN532,
  Acr122Link,
  acr122DirectTransmit,
  acr122FeedbackCommand,
  acr122FirmwareWarning,
  acr122GetResponse,
  acr122LedBuzzerCommand,
  acr122PiccParameterCommand,
  parseAcr122Firmware,
  parseAcr122LedResponse,
  parseAcr122PiccParameterResponse,
  type Acr122Send,
} from '../src/index.js';

const hex = toSpacedHex;

/** A scripted send: each APDU must be the next expected one. */
function scripted(...steps: [string, string][]): { send: Acr122Send; sent: string[]; left: () => number } {
  const queue = [...steps];
  const sent: string[] = [];
  const send: Acr122Send = (apdu: Uint8Array, _options: Pn53xLinkOptions) => {
    sent.push(hex(apdu));
    const next = queue.shift();
    if (!next || next[0] !== hex(apdu)) return Promise.reject(new Error(`unexpected ${hex(apdu)}`));
    return Promise.resolve(fromHex(next[1]));
  };
  return { send, sent, left: () => queue.length };
}

const controller = (send: Acr122Send) => new Pn53xController(new Acr122Link(send, 'ACR122U'), ACR122_PN532);

describe('Acr122Link', () => {
  it('tunnels GetFirmwareVersion and strips the emulated 90 00 (libnfc escape trace: PN532 v1.4)', async () => {
    const { send, left } = scripted(['FF 00 00 00 02 D4 02', 'D5 03 32 01 04 07 90 00']);
    expect((await controller(send).getFirmwareVersion()).text).toBe('PN532 v1.4');
    expect(left()).toBe(0);
  });

  it('fetches the rest after 61 LL with FF C0 00 00 LL (libnfc Touchatag trace)', async () => {
    const { send, sent } = scripted(['FF 00 00 00 02 D4 02', '61 08'], ['FF C0 00 00 08', 'D5 03 32 01 04 07 90 00']);
    expect((await controller(send).getFirmwareVersion()).text).toBe('PN532 v1.4');
    expect(sent).toEqual(['FF 00 00 00 02 D4 02', 'FF C0 00 00 08']);
    // The same answer followed by Get Response's own status word.
    const again = scripted(['FF 00 00 00 02 D4 02', '61 08'], ['FF C0 00 00 08', 'D5 03 32 01 04 07 90 00 90 00']);
    expect((await controller(again.send).getFirmwareVersion()).text).toBe('PN532 v1.4');
  });

  it('reports "no tag" for a tunnelled InListPassiveTarget (vector 17) and InCommunicateThru statuses (vector 14)', async () => {
    const { send } = scripted(
      ['FF 00 00 00 04 D4 4A 01 00', 'D5 4B 00 90 00'],
      ['FF 00 00 00 04 D4 42 31 32', 'D5 43 00 AA BB 90 00'],
      ['FF 00 00 00 04 D4 42 31 32', 'D5 43 01 90 00'],
    );
    const chip = controller(send);
    expect(await chip.listPassiveTargets(0x00)).toEqual([]);
    expect(hex(await chip.communicateThru(fromHex('3132')))).toBe('AA BB');
    await expect(chip.communicateThru(fromHex('3132'))).rejects.toMatchObject({ code: ErrorCode.Timeout });
  });

  it.each([
    ['63 00', ErrorCode.ProtocolError, /operation failed/],
    ['63 01', ErrorCode.ProtocolError, /PN532 did not respond/],
    ['63 27', ErrorCode.ProtocolError, /checksum/],
    ['63 7F', ErrorCode.ProtocolError, /rejected the command/],
    ['6A 81', ErrorCode.UnsupportedCapability, /not supported/],
    ['6F 00', ErrorCode.ProtocolError, /undocumented/],
  ])('maps the status word %s to %s', async (sw, code, message) => {
    const { send } = scripted(['FF 00 00 00 02 D4 02', sw]);
    await expect(controller(send).getFirmwareVersion()).rejects.toMatchObject({
      code,
      message: expect.stringMatching(message),
    });
  });

  it.each([
    [['61 08', '01 02 03'], 'a Get Response of the wrong length'],
    [['61 08', '63 00'], 'an error status to Get Response'],
    [['D5'], 'one byte'],
    [['90 00'], 'no PN532 answer'],
    [['D5 05 00 90 00'], 'the answer of another command'],
    [['61 02', '61 02', '61 02', '61 02', '61 02', '61 02'], 'endless 61 LL'],
  ])('fails with a typed error for %j (%s)', async (answers) => {
    let i = 0;
    const send: Acr122Send = () => Promise.resolve(fromHex(answers[Math.min(i++, answers.length - 1)]!));
    const error: unknown = await controller(send)
      .getFirmwareVersion()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toMatchObject({ code: expect.stringMatching(/PROTOCOL_ERROR|UNSUPPORTED_CAPABILITY/) });
  });

  it('refuses payloads that do not fit a Direct Transmit', async () => {
    const { send } = scripted();
    await expect(new Acr122Link(send, 'R').exchange(new Uint8Array(256), { timeoutMs: 10 })).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
    expect(() => acr122DirectTransmit(new Uint8Array(0))).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidArgument }),
    );
    expect(hex(acr122GetResponse(256))).toBe('FF C0 00 00 00');
    expect(ACR122_PN532.extendedFrames).toBe(false);
  });
});

describe('ACR122U pseudo-APDUs', () => {
  it('parses the firmware version (vector 16) and warns about old firmware', () => {
    const firmware = parseAcr122Firmware(fromHex('41 43 52 31 32 32 55 32 30 33'));
    expect(firmware).toEqual({ text: 'ACR122U203', version: { major: 2, minor: 3 } });
    expect(acr122FirmwareWarning(firmware)).toMatch(/2\.06/);
    expect(acr122FirmwareWarning(parseAcr122Firmware(new TextEncoder().encode('ACR122U207')))).toBeUndefined();
    expect(acr122FirmwareWarning(parseAcr122Firmware(new TextEncoder().encode('ACR122U102')))).toMatch(/2\.00/);
    expect(acr122FirmwareWarning(parseAcr122Firmware(new TextEncoder().encode('XYZ')))).toMatch(/not an ACR122U/);
    expect(parseAcr122Firmware(fromHex('41 43 52 31 32 32 55 32 31 35 90 00')).text).toBe('ACR122U215');
    for (const bad of ['', '00 01 02', '90 00', '41 FF']) {
      expect(() => parseAcr122Firmware(fromHex(bad))).toThrow(
        expect.objectContaining({ code: ErrorCode.ProtocolError }),
      );
    }
  });

  it('builds LED/buzzer commands as nfcpy sends them and parses the LED state', () => {
    expect(hex(acr122FeedbackCommand({ led: 'green' }))).toBe('FF 00 40 0E 04 00 00 00 00');
    expect(hex(acr122FeedbackCommand({ led: 'red', beepMs: 300 }))).toBe('FF 00 40 0D 04 03 00 01 01');
    expect(hex(acr122FeedbackCommand({ led: 'off' }))).toBe('FF 00 40 0C 04 00 00 00 00');
    expect(hex(acr122FeedbackCommand({ led: 'orange', beepMs: 60_000 }))).toBe('FF 00 40 0F 04 FF 00 01 01');
    expect(hex(acr122LedBuzzerCommand({ ledControl: 0x50, t1: 1, t2: 1, repetitions: 3, buzzer: 3 }))).toBe(
      'FF 00 40 50 04 01 01 03 03',
    );
    expect(() => acr122LedBuzzerCommand({ ledControl: 256, t1: 0, t2: 0, repetitions: 0, buzzer: 0 })).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidArgument }),
    );
    expect(parseAcr122LedResponse(fromHex('90 02'))).toBe(2);
    expect(() => parseAcr122LedResponse(fromHex('63 00'))).toThrow(
      expect.objectContaining({ code: ErrorCode.ProtocolError }),
    );
    expect(() => parseAcr122LedResponse(fromHex('90'))).toThrow(
      expect.objectContaining({ code: ErrorCode.ProtocolError }),
    );
  });

  it('builds and parses the PICC operating parameter (nfcpy: 7F, automatic polling off)', () => {
    expect(hex(acr122PiccParameterCommand(0x7f))).toBe('FF 00 51 7F 00');
    expect(parseAcr122PiccParameterResponse(fromHex('90 7F'))).toBe(0x7f);
    expect(() => parseAcr122PiccParameterResponse(fromHex('6A 81'))).toThrow(
      expect.objectContaining({ code: ErrorCode.UnsupportedCapability }),
    );
    expect(() => parseAcr122PiccParameterResponse(fromHex('90 7F 00'))).toThrow(
      expect.objectContaining({ code: ErrorCode.ProtocolError }),
    );
  });
});

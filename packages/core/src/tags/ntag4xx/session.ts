/**
 * EV2 secure-messaging primitives of NTAG 413/424 DNA (AN12196 §6.6, NT4H2421Gx §9.1): session-key derivation,
 * MAC inputs, truncated MACs, IVs and FULL-mode padding. Both sides use them: the reader side in this package, and
 * virtual chips in the test fixtures, so a mismatch between the two is a bug here rather than two bugs that agree.
 *
 * Counter convention: every function here takes `cmdCtr`, the counter value the *command* was sent with. The
 * response-side functions ({@link responseMacInput}, {@link responseIv}) add the one themselves, as the chip
 * increments its counter between command and response.
 *
 * @packageDocumentation
 */
import { AES_BLOCK, AesKey, constantTimeEqual, padIso9797M2, truncateMac, unpadIso9797M2 } from '../../crypto/aes.js';
import { ErrorCode, TaplineError } from '../../model/errors.js';
import { concatBytes } from '../../util/bytes.js';

/** A session or application key as raw 16 bytes or as a prepared {@link AesKey}. */
export type Ev2KeyMaterial = Uint8Array | AesKey;

/** The two session keys of an EV2 authentication. */
export interface Ev2SessionKeys {
  /** K_SesAuthENC = CMAC(Kx, SV1). */
  readonly enc: Uint8Array;
  /** K_SesAuthMAC = CMAC(Kx, SV2). */
  readonly mac: Uint8Array;
}

/** Largest command counter value. A command sent with it would need a response counter of 0x10000. */
export const EV2_CMD_CTR_MAX = 0xffff;
/** Length of the transaction identifier. */
export const EV2_TI_LENGTH = 4;
/** Length of RndA and RndB. */
export const EV2_RND_LENGTH = 16;
/** Length of a truncated MAC (MACt). */
export const EV2_MAC_LENGTH = 8;

function asKey(key: Ev2KeyMaterial): AesKey {
  return key instanceof AesKey ? key : new AesKey(key);
}

function checkLength(bytes: Uint8Array, length: number, what: string): void {
  if (bytes.length !== length) {
    throw new TaplineError(ErrorCode.InvalidArgument, `${what} has ${length} bytes, not ${bytes.length}.`);
  }
}

function checkByte(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xff) {
    throw new TaplineError(ErrorCode.InvalidArgument, `${what} must be a byte, not ${value}.`);
  }
}

/**
 * Fails with `INVALID_ARGUMENT` unless `cmdCtr` is a counter a command may still be sent with. 0xFFFF is refused
 * because the response to it would need 0x10000, which two bytes cannot carry: the session is used up and a new
 * authentication is needed.
 */
export function checkCommandCounter(cmdCtr: number): void {
  if (!Number.isInteger(cmdCtr) || cmdCtr < 0 || cmdCtr >= EV2_CMD_CTR_MAX) {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      `The EV2 command counter must be 0 to ${EV2_CMD_CTR_MAX - 1}, not ${cmdCtr}.`,
      { hint: 'The secure-messaging session is used up; authenticate again.' },
    );
  }
}

function counterLe(value: number): Uint8Array {
  return Uint8Array.of(value & 0xff, (value >>> 8) & 0xff);
}

/**
 * The session vectors SV1 (for the ENC key) and SV2 (for the MAC key):
 * `A5 5A 00 01 00 80 ‖ RndA[0..1] ‖ (RndA[2..7] ⊕ RndB[0..5]) ‖ RndB[6..15] ‖ RndA[8..15]`, SV2 with `5A A5`.
 */
export function ev2SessionVectors(
  rndA: Uint8Array,
  rndB: Uint8Array,
): { readonly sv1: Uint8Array; readonly sv2: Uint8Array } {
  checkLength(rndA, EV2_RND_LENGTH, 'RndA');
  checkLength(rndB, EV2_RND_LENGTH, 'RndB');
  const tail = new Uint8Array(26);
  tail.set(rndA.subarray(0, 2), 0);
  for (let i = 0; i < 6; i++) tail[2 + i] = rndA[2 + i]! ^ rndB[i]!;
  tail.set(rndB.subarray(6, 16), 8);
  tail.set(rndA.subarray(8, 16), 18);
  return {
    sv1: concatBytes(Uint8Array.of(0xa5, 0x5a, 0x00, 0x01, 0x00, 0x80), tail),
    sv2: concatBytes(Uint8Array.of(0x5a, 0xa5, 0x00, 0x01, 0x00, 0x80), tail),
  };
}

/** K_SesAuthENC = CMAC(key, SV1) and K_SesAuthMAC = CMAC(key, SV2) for an authentication with `rndA` and `rndB`. */
export function deriveEv2SessionKeys(key: Uint8Array, rndA: Uint8Array, rndB: Uint8Array): Ev2SessionKeys {
  const { sv1, sv2 } = ev2SessionVectors(rndA, rndB);
  const k = new AesKey(key);
  return { enc: k.cmac(sv1), mac: k.cmac(sv2) };
}

/**
 * The command MAC input: `Cmd ‖ CmdCtr (2 B LE) ‖ TI ‖ CmdHeader ‖ CmdData`. In FULL mode `data` is the
 * ciphertext.
 */
export function commandMacInput(
  cmd: number,
  cmdCtr: number,
  ti: Uint8Array,
  header: Uint8Array,
  data: Uint8Array,
): Uint8Array {
  checkByte(cmd, 'The command code');
  checkCommandCounter(cmdCtr);
  checkLength(ti, EV2_TI_LENGTH, 'The transaction identifier');
  return concatBytes(Uint8Array.of(cmd), counterLe(cmdCtr), ti, header, data);
}

/**
 * The response MAC input: `RC ‖ (CmdCtr + 1) (2 B LE) ‖ TI ‖ RespData`, where `cmdCtr` is the counter the command
 * was sent with and `rc` the return code (SW2 of `91 xx`, normally 00). In FULL mode `data` is the ciphertext.
 */
export function responseMacInput(rc: number, cmdCtr: number, ti: Uint8Array, data: Uint8Array): Uint8Array {
  checkByte(rc, 'The return code');
  checkCommandCounter(cmdCtr);
  checkLength(ti, EV2_TI_LENGTH, 'The transaction identifier');
  return concatBytes(Uint8Array.of(rc), counterLe(cmdCtr + 1), ti, data);
}

/** MACt: the odd-indexed bytes of CMAC(K_SesAuthMAC, input), 8 bytes. */
export function computeMact(macKey: Ev2KeyMaterial, input: Uint8Array): Uint8Array {
  return truncateMac(asKey(macKey).cmac(input));
}

/** True when `mac` is the MACt of `input`, compared in constant time. */
export function verifyMact(macKey: Ev2KeyMaterial, input: Uint8Array, mac: Uint8Array): boolean {
  return constantTimeEqual(computeMact(macKey, input), mac);
}

function ivFor(encKey: Ev2KeyMaterial, prefix: readonly [number, number], ti: Uint8Array, ctr: number): Uint8Array {
  checkLength(ti, EV2_TI_LENGTH, 'The transaction identifier');
  const block = new Uint8Array(AES_BLOCK);
  block[0] = prefix[0];
  block[1] = prefix[1];
  block.set(ti, 2);
  block.set(counterLe(ctr), 6);
  return asKey(encKey).encryptEcb(block);
}

/** IVc = E(K_SesAuthENC, `A5 5A ‖ TI ‖ CmdCtr (LE) ‖ 00×8`). */
export function commandIv(encKey: Ev2KeyMaterial, ti: Uint8Array, cmdCtr: number): Uint8Array {
  checkCommandCounter(cmdCtr);
  return ivFor(encKey, [0xa5, 0x5a], ti, cmdCtr);
}

/** IVr = E(K_SesAuthENC, `5A A5 ‖ TI ‖ (CmdCtr + 1) (LE) ‖ 00×8`), `cmdCtr` being the command's counter. */
export function responseIv(encKey: Ev2KeyMaterial, ti: Uint8Array, cmdCtr: number): Uint8Array {
  checkCommandCounter(cmdCtr);
  return ivFor(encKey, [0x5a, 0xa5], ti, cmdCtr + 1);
}

/** FULL-mode encryption: ISO 9797-1 M2 padding (always added) and AES-CBC under K_SesAuthENC with `iv`. */
export function encryptFullData(encKey: Ev2KeyMaterial, iv: Uint8Array, plain: Uint8Array): Uint8Array {
  return asKey(encKey).encryptCbc(padIso9797M2(plain), iv);
}

/**
 * FULL-mode decryption: AES-CBC under K_SesAuthENC with `iv`, then removal of the M2 padding. Ciphertext that is not
 * whole blocks, or that decrypts without valid padding, fails with `PROTOCOL_ERROR`.
 */
export function decryptFullData(encKey: Ev2KeyMaterial, iv: Uint8Array, ciphertext: Uint8Array): Uint8Array {
  if (ciphertext.length === 0 || ciphertext.length % AES_BLOCK !== 0) {
    throw new TaplineError(
      ErrorCode.ProtocolError,
      `Encrypted data of ${ciphertext.length} bytes is not a whole number of AES blocks.`,
    );
  }
  return Uint8Array.from(unpadIso9797M2(asKey(encKey).decryptCbc(ciphertext, iv)));
}

/** Parameters of an {@link Ev2Session}. */
export interface Ev2SessionInit {
  /** The key number the session was authenticated with. */
  readonly keyNo: number;
  /** Transaction identifier, 4 bytes, chosen by the chip. */
  readonly ti: Uint8Array;
  /** The two session keys. */
  readonly keys: Ev2SessionKeys;
  /** PDcap2 (6 bytes) the chip returned. */
  readonly pdCap2: Uint8Array;
  /** PCDcap2 (6 bytes) as the chip echoed it. */
  readonly pcdCap2: Uint8Array;
  /** Initial command counter. Default 0, as after AuthenticateEV2First. */
  readonly cmdCtr?: number;
}

/**
 * The state of one EV2 secure-messaging session: transaction identifier, session keys, capabilities and the command
 * counter. The keys live in private fields and are left out of `JSON.stringify` and `util.inspect`, so logging a
 * session does not leak them; {@link Ev2Session.encKey} and {@link Ev2Session.macKey} hand out copies on request.
 */
export class Ev2Session {
  /** The key number the session was authenticated with. */
  readonly keyNo: number;
  /** Transaction identifier (4 bytes). */
  readonly ti: Uint8Array;
  /** PDcap2 (6 bytes). */
  readonly pdCap2: Uint8Array;
  /** PCDcap2 (6 bytes). */
  readonly pcdCap2: Uint8Array;
  readonly #encBytes: Uint8Array;
  readonly #macBytes: Uint8Array;
  readonly #enc: AesKey;
  readonly #mac: AesKey;
  #cmdCtr: number;
  #endReason: string | undefined;

  constructor(init: Ev2SessionInit) {
    checkLength(init.ti, EV2_TI_LENGTH, 'The transaction identifier');
    checkLength(init.pdCap2, 6, 'PDcap2');
    checkLength(init.pcdCap2, 6, 'PCDcap2');
    checkByte(init.keyNo, 'The key number');
    const cmdCtr = init.cmdCtr ?? 0;
    if (!Number.isInteger(cmdCtr) || cmdCtr < 0 || cmdCtr > EV2_CMD_CTR_MAX) {
      throw new TaplineError(ErrorCode.InvalidArgument, `The EV2 command counter cannot be ${cmdCtr}.`);
    }
    this.keyNo = init.keyNo;
    this.ti = Uint8Array.from(init.ti);
    this.pdCap2 = Uint8Array.from(init.pdCap2);
    this.pcdCap2 = Uint8Array.from(init.pcdCap2);
    this.#encBytes = Uint8Array.from(init.keys.enc);
    this.#macBytes = Uint8Array.from(init.keys.mac);
    this.#enc = new AesKey(this.#encBytes);
    this.#mac = new AesKey(this.#macBytes);
    this.#cmdCtr = cmdCtr;
  }

  /** The counter the next MAC or FULL command will be sent with. */
  get cmdCtr(): number {
    return this.#cmdCtr;
  }

  /** A copy of K_SesAuthENC. */
  get encKey(): Uint8Array {
    return Uint8Array.from(this.#encBytes);
  }

  /** A copy of K_SesAuthMAC. */
  get macKey(): Uint8Array {
    return Uint8Array.from(this.#macBytes);
  }

  /** K_SesAuthENC, prepared for repeated use. */
  get encCipher(): AesKey {
    return this.#enc;
  }

  /** K_SesAuthMAC, prepared for repeated use. */
  get macCipher(): AesKey {
    return this.#mac;
  }

  /** True while another command can be sent in this session: it has not ended and its counter is not used up. */
  get usable(): boolean {
    return this.#endReason === undefined && this.#cmdCtr < EV2_CMD_CTR_MAX;
  }

  /** Why the session ended, or `undefined` while it is active. */
  get endReason(): string | undefined {
    return this.#endReason;
  }

  /**
   * Marks the session as over. The chip drops its authentication on any error status and on a wrong MAC
   * (NT4H2421Gx §9.1.9), and the reader cannot know the chip's counter after a lost frame, so after either the
   * session must not be used again.
   */
  end(reason: string): void {
    this.#endReason ??= reason;
  }

  /** Fails with `INVALID_ARGUMENT` when the session has ended or its counter is used up. */
  assertUsable(): void {
    if (this.#endReason !== undefined) {
      throw new TaplineError(ErrorCode.InvalidArgument, `The EV2 session has ended: ${this.#endReason}.`, {
        hint: 'Authenticate again before sending more authenticated commands.',
      });
    }
    checkCommandCounter(this.#cmdCtr);
  }

  /** Moves the counter on after a command the chip has counted. */
  incrementCommandCounter(): void {
    checkCommandCounter(this.#cmdCtr);
    this.#cmdCtr += 1;
  }

  /** A key-free summary, for logs. */
  toJSON(): { keyNo: number; ti: string; cmdCtr: number; active: boolean } {
    return {
      keyNo: this.keyNo,
      ti: Buffer.from(this.ti).toString('hex'),
      cmdCtr: this.#cmdCtr,
      active: this.#endReason === undefined,
    };
  }
}

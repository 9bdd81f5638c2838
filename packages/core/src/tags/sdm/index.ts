/**
 * SUN / SDM verification (AES mode) for NTAG 424/413 DNA and VivoKey implants: message parsing, the SDM session
 * primitives, the verifier and the replay guard.
 *
 * @packageDocumentation
 */
export {
  SDM_COUNTER_LENGTH,
  SDM_COUNTER_MAX,
  SDM_MAC_LENGTH,
  SDM_UID_LENGTH,
  computeApexSignature,
  computeSdmMac,
  decryptPiccData,
  decryptSdmFileData,
  deriveSdmSessionKeys,
  encryptPiccData,
  encryptSdmFileData,
  sdmFileDataMacInput,
  sdmSessionVector,
  type AesKeyInput,
  type ApexSignatureInput,
  type PiccData,
  type SdmFileDataInput,
  type SdmMacInput,
  type SdmSessionKeyPurpose,
} from './session.js';
export {
  DEFAULT_SUN_PARAM_NAMES,
  parseSunMessage,
  type ApexCmacMessage,
  type ParseSunOptions,
  type SdmEncryptedMessage,
  type SdmPlainMessage,
  type SunMessage,
  type SunMode,
  type SunParamNames,
} from './parse.js';
export {
  SUN_FAILURE_MESSAGES,
  SunVerifier,
  createSunVerifier,
  verifySun,
  type SunFailureReason,
  type SunKeys,
  type SunResult,
} from './verify.js';
export { createCounterGuard, createMemoryCounterStore, type CounterGuard, type CounterStore } from './counter-guard.js';

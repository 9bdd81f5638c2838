/**
 * The reference VivoKey platform: an HTTP server with the Auth API's endpoints, real crypto against the enrolled
 * chips' keys, ES256 tokens with a JWKS, fault injection, and Tapline's extension: an OpenID Provider for the
 * device flow and the scan-request resource.
 *
 * @packageDocumentation
 */
export { DEFAULT_ACCOUNT, pairwiseSubject } from './accounts.js';
export {
  ChipRegistry,
  PLATFORM_CHIP_CLAIMS,
  createChipRegistry,
  defaultChipRegistry,
  type ChipEnrollment,
  type EnrollableVirtualChip,
  type EnrolledChip,
  type PlatformChipClaims,
  type PlatformChipKind,
  type VirtualChipEnrollmentOptions,
} from './chip-registry.js';
export type {
  ArmedFault,
  FaultControl,
  LatencyFault,
  MalformedJsonFault,
  PlatformFault,
  PlatformFaultBase,
  PlatformFaultKind,
  ResetFault,
  SlowBodyFault,
  StatusFault,
} from './faults.js';
export {
  generatePlatformSigningKey,
  type GeneratePlatformSigningKeyOptions,
  type PlatformSigningKey,
} from './signing-keys.js';
export type { OidcStats } from './oidc-common.js';
export {
  chipSubject,
  startReferencePlatform,
  type ApproveDeviceOptions,
  type CreateScanRequestOptions,
  type PlatformDeviceClient,
  type PlatformStats,
  type ReferencePlatform,
  type ReferencePlatformOptions,
  type RelyingPartyRegistration,
  type ScanRequestStats,
} from './reference-platform.js';
export type {
  ScanRequestRecord,
  ScanRequestRelyingParty,
  ScanRequestResult,
  ScanRequestState,
} from './scan-requests.js';

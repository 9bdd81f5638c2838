/**
 * The reference VivoKey platform: an HTTP server with the Auth API's endpoints, real crypto against the enrolled
 * chips' keys, ES256 tokens with a JWKS, and fault injection.
 *
 * @packageDocumentation
 */
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
export {
  chipSubject,
  startReferencePlatform,
  type PlatformStats,
  type ReferencePlatform,
  type ReferencePlatformOptions,
} from './reference-platform.js';

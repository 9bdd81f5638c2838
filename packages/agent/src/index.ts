/**
 * `@tapline/agent`: the unattended process that answers VivoKey scan requests from a desktop reader. It is
 * associated with the user's profile once (`tapline login`, the OAuth device flow approved on the phone), then
 * long-polls the platform for pending scan requests and answers them when the user taps.
 *
 * @packageDocumentation
 */
export {
  BUILTIN_DRIVER_PACKAGES,
  runAgent,
  type AgentOptions,
  type AgentStopReason,
  type AgentSummary,
  type AnsweredScan,
} from './agent.js';
export {
  connectToPlatform,
  connectToSimulatedPlatform,
  type PlatformConnection,
  type SimulatedPlatformOptions,
} from './connect.js';
export {
  PlatformRequestSource,
  toPipelineRequest,
  type PlatformReachability,
  type PlatformRequestSourceOptions,
} from './platform-source.js';
export { humanLine, readersEventLine, scanEventLine, type AgentLine, type TagJson } from './format.js';
export {
  CONTROL_PROTOCOL_VERSION,
  DEFAULT_CONTROL_TIMEOUT_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  MAX_REPLY_BYTES,
  MAX_REQUEST_BYTES,
  controlSocketPath,
  sendControl,
  startControlServer,
  type AgentStatus,
  type ChooseErrorCode,
  type ChooseOutcome,
  type ControlErrorJson,
  type ControlHandlers,
  type ControlReplies,
  type ControlRequest,
  type ControlServer,
  type ControlServerOptions,
  type ControlSocketUser,
  type SendControlOptions,
} from './control.js';
export {
  LAUNCHD_LABEL,
  SERVICE_PLATFORMS,
  SYSTEMD_UNIT,
  WINDOWS_TASK_NAME,
  serviceDefinition,
  type ServiceDefinition,
  type ServiceOptions,
  type ServicePlatform,
} from './service.js';
export { describeRequest, formatDuration, promptChoice, type PromptChoiceOptions } from './chooser.js';

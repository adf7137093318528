/**
 * edgefabric public API (library first; the CLI is built on top of it).
 */
export * from './errors.js'
export * from './codec/index.js'
export { dial, listen, registerTransport, transportFor } from './transport/index.js'
export type * from './transport/types.js'
export { AbstractConnection, type AbstractConnectionInit } from './transport/abstract-connection.js'
export { FrameDecoder, encodeFrame, frameHeader } from './transport/framing.js'
export {
  PreAuthGate, PreAuthTimeoutError, sourceKey,
  type PreAuthOptions, type PreAuthRefusal, type PreAuthRefusalEvent, type PreAuthTicket
} from './transport/pre-auth.js'
export { parseEdgeToEdgeRule, type EdgeToEdgeOption, type EdgeToEdgeRule, type EdgeToEdgeRuleInput } from './hub/edge-to-edge.js'
export { Hub } from './hub/hub.js'
export { HubCore, NodeOfflineError, parseNodeDestination } from './hub/hub-core.js'
export type * from './hub/types.js'
export { createJoinToken, decodeJoinToken, verifyJoinToken, type JoinTokenPayload } from './identity/token.js'
export { EdgeNode, HubUnreachableError, type EdgeOptions } from './edge/edge-node.js'
export { HubRefusedError } from './edge/connector.js'
export { ModuleBus, ModuleHandle, type MailboxOptions, type OverflowPolicy, type RegisterOptions, type DispatchResult, type BusStats, type ModuleStats } from './edge/bus.js'
export { registerServiceBus, startUpstreamEndpoint, callLocalHttp } from './edge/servicebus.js'
export { RemoteError, TooManyRequestsError } from './session/pending.js'
export { systemClock, ManualClock, type Clock } from './util/clock.js'
export { createLogger, type Logger } from './ops/logger.js'
export { DeviceRegistry } from './device/cloud/registry.js'
export type * from './device/cloud/registry-types.js'
export * from './device/errors.js'
export { deviceRoutes, type DeviceHttpOptions } from './device/cloud/http-api.js'
export type { EdgeDevices, TwinView, DeviceOptions } from './device/edge/devices.js'
export type { LocalCredential } from './device/edge/acl.js'
export { TwinRequestError } from './device/edge/twin-payload.js'
export * from './device/model.js'
export * from './device/protocol.js'

/**
 * edgefabric public API (library first; the CLI is built on top of it).
 */
export * from './errors.js'
export * from './envelope.js'
export { defaultCodec, type EnvelopeCodec } from './codec.js'
export { dial, listen, registerTransport, transportFor } from './transport/index.js'
export type * from './transport/types.js'
export { AbstractConnection, type AbstractConnectionInit } from './transport/abstract-connection.js'
export { FrameDecoder, encodeFrame, frameHeader } from './transport/framing.js'

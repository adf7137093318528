/**
 * What an edge remembers about its first join (issue 12): the token is for
 * the first join only. After the hub welcomed a join proof, the edge writes
 * `${dataDir}/identity/hub.json` with the node name and the hub pins from
 * the token. Later starts dial with those pins and prove only the node key,
 * so they need no token at all (`edgefabric edge` without `--token`), and an
 * expired token given again is simply not used.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { IdentityError, InvalidOptionError, toError } from '../errors.js'
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-file.js'
import { decodeJoinToken, tokenAdmits, type JoinTokenPins } from '../identity/token.js'
import { edgeJoinSecret, tokenPayloadPart } from '../identity/join-proof.js'

export const JOIN_STATE_FILE = 'hub.json'

export interface JoinState {
  v: 1
  node: string
  /** The hub id that welcomed the join (its QUIC peer id). */
  hub: string
  pins: JoinTokenPins
  /** ms since the epoch. */
  joinedAt: number
}

/** How the connector should authenticate, worked out at start. */
export interface JoinSetup {
  pins: JoinTokenPins
  /** First-join material; absent when started without a token. */
  join?: { payload: string, secret: Uint8Array }
  /** This node is already bound at this hub: send no join proof. */
  joined: boolean
  file: string
}

export function joinStateFile (dataDir: string): string {
  return join(dataDir, 'identity', JOIN_STATE_FILE)
}

export async function readJoinState (dataDir: string): Promise<JoinState | undefined> {
  const file = joinStateFile(dataDir)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new IdentityError(file, `cannot be read: ${toError(err).message}`, { cause: err })
  }
  try {
    const o = JSON.parse(text) as Partial<JoinState>
    if (o.v !== 1 || typeof o.node !== 'string' || typeof o.hub !== 'string' || typeof o.joinedAt !== 'number' ||
      typeof o.pins !== 'object' || o.pins === null || typeof o.pins.quic !== 'string' || typeof o.pins.tls !== 'string') throw new Error('unexpected shape')
    return { v: 1, node: o.node, hub: o.hub, pins: { quic: o.pins.quic, tls: o.pins.tls }, joinedAt: o.joinedAt }
  } catch (err) {
    throw new IdentityError(file, `is corrupt (${toError(err).message}); remove it and start the edge with a new join token`, { cause: err })
  }
}

export async function writeJoinState (dataDir: string, state: JoinState): Promise<void> {
  await ensurePrivateDir(join(dataDir, 'identity'))
  await writeFileAtomic(joinStateFile(dataDir), JSON.stringify(state, null, 1) + '\n')
}

/** Decide how to join: token pins and proof material, or the remembered join. */
export async function resolveJoin (dataDir: string, nodeId: string, token: string | undefined): Promise<JoinSetup> {
  const file = joinStateFile(dataDir)
  const state = await readJoinState(dataDir)
  const remembered = state !== undefined && state.node === nodeId ? state : undefined
  if (token === undefined) {
    if (remembered === undefined) {
      throw new InvalidOptionError('token', `is required for the first join of node "${nodeId}" (no join record in ${file}); create one with "edgefabric token create --node ${nodeId}"`)
    }
    return { pins: remembered.pins, joined: true, file }
  }
  const payload = decodeJoinToken(token)
  if (!tokenAdmits(payload, nodeId)) {
    throw new InvalidOptionError('token', `the join token is for node "${payload.node}", not "${nodeId}"`)
  }
  const sameHub = remembered !== undefined && remembered.pins.quic === payload.pins.quic && remembered.pins.tls === payload.pins.tls
  return { pins: payload.pins, join: { payload: tokenPayloadPart(token), secret: edgeJoinSecret(token) }, joined: sameHub, file }
}

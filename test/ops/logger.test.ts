import t from 'tap'
import { Writable } from 'node:stream'
import { createLogger, nullLogger } from '../../src/ops/logger.js'
import { InvalidOptionError } from '../../src/errors.js'

function capture (): { lines: () => Array<Record<string, unknown>>, stream: Writable } {
  const chunks: string[] = []
  const stream = new Writable({ write (c, _e, cb) { chunks.push(String(c)); cb() } })
  return { stream, lines: () => chunks.join('').trim().split('\n').filter(Boolean).map(l => JSON.parse(l) as Record<string, unknown>) }
}

t.test('quiet by default, component children, redaction', async t => {
  const c = capture()
  const log = createLogger({ name: 'edgefabric-hub', destination: c.stream })
  t.equal(log.level, 'warn')
  const child = log.child({ component: 'hub.session' })
  child.info('not shown at warn')
  child.warn({ node: 'edge-1', token: 'secret-token', headers: { authorization: 'Bearer x' } }, 'refused')
  const [line, ...rest] = c.lines()
  t.equal(rest.length, 0)
  t.match(line, { name: 'edgefabric-hub', component: 'hub.session', node: 'edge-1', token: '[redacted]', headers: { authorization: '[redacted]' }, msg: 'refused', level: 40 })
  t.match(line?.time, /^\d{4}-\d\d-\d\dT/)
})

t.test('level validation names logLevel', async t => {
  t.equal(createLogger({ level: 'debug', destination: capture().stream }).level, 'debug')
  try {
    createLogger({ level: 'verbose' })
    t.fail('expected throw')
  } catch (err) {
    t.ok(err instanceof InvalidOptionError)
    t.equal((err as InvalidOptionError).option, 'logLevel')
    t.match((err as Error).message, /must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent", got "verbose"/)
  }
})

t.test('nullLogger is silent', async t => {
  t.equal(nullLogger.level, 'silent')
  nullLogger.child({ component: 'x' }).error('nothing')
  t.pass()
})

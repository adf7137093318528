import t from 'tap'
import { runCompliance } from './compliance.js'

runCompliance(t, {
  listenUrl: 'memory://',
  listenOptions: () => ({ identity: 'hub-identity' }),
  dialOptions: listener => ({ expectedRemoteIdentity: listener.identity as string }),
  wrongIdentity: 'someone-else',
  deadUrl: 'memory://nobody-listens-here',
  skip: { peerKill: 'memory:// is in-process; there is no peer process to kill' }
})

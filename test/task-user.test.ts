// Whom a task runs as (pure: the password lookup is given).
import test from 'ava'
import { taskUser } from '../src/scheduler/task-user.js'

const lookup = (user: string): { uid: number; gid: number } | undefined => (user === 'alice' ? { uid: 1001, gid: 1001 } : undefined)
const rootAgent = { user: 'root', uid: 0 }

test("a task runs as its submitter when the agent is root, and as the agent for the agent's own user or none", (t) => {
  t.deepEqual(taskUser('alice', rootAgent, lookup), { user: 'alice', uid: 1001, gid: 1001 })
  t.is(taskUser('', rootAgent, lookup), undefined)
  t.is(taskUser('root', rootAgent, lookup), undefined)
  t.is(taskUser('loam', { user: 'loam', uid: 999 }, lookup), undefined)
})

test('a user this machine lacks, or an agent that cannot switch users, is a reason not to start', (t) => {
  t.regex(taskUser('ghost', rootAgent, lookup) as string, /^user ghost does not exist on this machine/)
  t.regex(taskUser('alice', { user: 'loam', uid: 999 }, lookup) as string, /^the agent runs as loam and cannot start a task as alice: run agents as root, or submit as loam$/)
})

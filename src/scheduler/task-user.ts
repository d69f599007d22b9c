// Whom a task runs as: the user who submitted it, as a Mesos agent runs a task
// as its framework's user. Switching needs an agent running as root; a task of
// the agent's own user runs as it is.
import { passwdEntry, processIdentity } from '../common/identity.js'

export interface TaskUser {
  user: string
  uid: number
  gid: number
}

export interface AgentUser {
  user: string
  uid: number
}

export function agentUser(): AgentUser {
  return { user: processIdentity().user, uid: process.getuid?.() ?? 0 }
}

/**
 * The uid and gid a task of `user` starts with: undefined to run as the agent
 * (no user named, or the agent's own), or why it cannot run on this machine.
 */
export function taskUser(user: string, agent: AgentUser, lookup = passwdEntry): TaskUser | undefined | string {
  if (!user || user === agent.user) return undefined
  const entry = lookup(user)
  if (!entry) return `user ${user} does not exist on this machine: create it here, or submit as a user that does`
  if (agent.uid !== 0) return `the agent runs as ${agent.user} and cannot start a task as ${user}: run agents as root, or submit as ${agent.user}`
  return { user, ...entry }
}

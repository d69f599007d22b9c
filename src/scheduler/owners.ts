// Jobs, services and the volumes they use belong to whoever asked for them:
// only that user, or the superuser, may stop or change them. Only the namenode
// knows who the superuser is (its --superuser and --supergroup), so it is asked.
import type { LoamClient } from '../client/client.js'
import type { CallContext } from '../rpc/server.js'

/** Who asked: as the namenode would see the call (src/namenode/server.ts principal()). */
export interface Requester {
  user: string
  groups: string[]
}

export function requester(ctx: CallContext): Requester {
  const user = ctx.user || 'nobody'
  return { user, groups: ctx.groups.length > 0 ? ctx.groups : [user] }
}

/** Whether the requester owns the thing or is the superuser. A record without an owner (kept before owners were) is the superuser's. */
export async function mayManage(nn: LoamClient, owner: string | undefined, who: Requester): Promise<boolean> {
  if (owner !== undefined && owner === who.user) return true
  const seen = await nn.nn.call('WhoAmI', {}, { user: who.user, groups: who.groups })
  return seen.superuser
}

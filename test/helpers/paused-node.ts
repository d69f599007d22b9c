// A scheduler restart an agent did not see coming: what the scheduler asked of
// the agent just before it died (a kill, a launch) never reached it.
import type { TestCluster } from './cluster.js'

/** Pauses node i (SIGSTOP), runs act, kill -9s and restarts the scheduler, and lets the node go on. */
export async function restartSchedulerBehindPausedNode(c: TestCluster, i: number, act: () => Promise<unknown>): Promise<void> {
  const node = c.record.nodes[i]!.pid
  process.kill(node, 'SIGSTOP')
  try {
    await act()
    await c.killScheduler()
    await c.restartScheduler()
  } finally {
    process.kill(node, 'SIGCONT')
  }
}

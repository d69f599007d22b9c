// Every bound of the scheduler core, named once. Input is checked against these
// where it enters the core (src/scheduler/spec.ts and SchedulerCore's methods);
// the core asserts them where it relies on them. The daemon around the core
// checks the same bounds before it persists anything.

import { REPLICATION_MAX } from '../limits.js'

/** Agents registered at once. */
export const AGENTS_MAX = 10_000
/** Roles (users, teams) that share the cluster under DRF. */
export const ROLES_MAX = 256
/** Jobs the core holds at once: submitted and not yet finished. */
export const JOBS_MAX = 10_000
/** Tasks in one job: one per block of its input (a 6 TiB input at 64 MiB blocks). */
export const TASKS_PER_JOB_MAX = 100_000
/** Tasks the core holds at once, queued (pending) or running, over every job. */
export const QUEUED_TASKS_MAX = 1_000_000
/** Datanodes a task names as holding its input block: at most one per replica. */
export const PREFERRED_NODES_PER_TASK_MAX = REPLICATION_MAX
/** Racks a task names as holding its input block. */
export const PREFERRED_RACKS_PER_TASK_MAX = REPLICATION_MAX
/** Agent, datanode, rack, role, job and task ids, in UTF-8 bytes. */
export const ID_BYTES_MAX = 255

/** Cpus are counted in thousandths (Kubernetes' millicores), so sums are exact integers. */
export const MILLICPUS_PER_CPU = 1000
/** The largest agent: 4,096 cpus, 64 TiB of memory, 1 PiB of disk. */
export const AGENT_MILLICPUS_MAX = 4096 * MILLICPUS_PER_CPU
export const AGENT_MEM_MIB_MAX = 64 * 1024 * 1024
export const AGENT_DISK_MIB_MAX = 1024 * 1024 * 1024

/** How long a job waits for a node-local slot before it takes a rack-local one (Zaharia et al.'s W1). */
export const LOCALITY_WAIT_DEFAULT_MS = 3_000
/** Neither wait may exceed this: a job never waits more than twice this for a slot anywhere. */
export const LOCALITY_WAIT_MAX_MS = 10 * 60_000

/** DRF weights: a role with weight 2 gets twice the dominant share of a role with weight 1. */
export const ROLE_WEIGHT_DEFAULT = 1
export const ROLE_WEIGHT_MIN = 0.001
export const ROLE_WEIGHT_MAX = 1_000

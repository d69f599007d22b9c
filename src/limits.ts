// Every bound in Loam, named once. Input is checked against these where it
// enters (the wire, the CLI, the namespace); code asserts them where it relies on them.

/** A frame's header and payload together: a 64 KiB packet plus its header, or a large RPC. */
export const FRAME_BYTES_MAX = (1 << 20) + 64 * 1024
/** Block data moves in packets of at most this many bytes. */
export const PACKET_BYTES_MAX = 64 * 1024
/** Consecutive packets a datanode writes to disk in one go (fewer syscalls under load). */
export const DISK_WRITE_BYTES_MAX = 1024 * 1024
/** Page-aligned buffers of DISK_WRITE_BYTES_MAX a datanode stages O_DIRECT writes in; more at once go buffered. */
export const DIRECT_WRITE_SLOTS = 8
/** A datanode starts flushing a replica to disk every this many bytes, so the flush at its end is short. */
export const WRITE_BEHIND_BYTES = 4 * 1024 * 1024
/** Checksum chunk: every replica carries one xxhash64 per chunk of this size. */
export const CHUNK_BYTES = 64 * 1024
export const CHECKSUM_BYTES = 8
/** A replica's meta file: this header, then one checksum per chunk (src/datanode/replica-store.ts). */
export const REPLICA_META_HEADER_BYTES = 32

export const PATH_BYTES_MAX = 4096
/** A user or group name (a frame header's, chown's): as long as a path component. */
export const PRINCIPAL_NAME_BYTES_MAX = 255
/** Groups a caller may name in one frame header (a user in more sends its first ones, primary first). */
export const GROUPS_PER_CALLER_MAX = 64
/** A writer's client name, which holds its leases. */
export const CLIENT_NAME_BYTES_MAX = 255
export const NAME_BYTES_MAX = 255
export const PATH_COMPONENTS_MAX = 512
export const SYMLINK_TARGET_BYTES_MAX = 4096
export const XATTR_NAME_BYTES_MAX = 255
export const XATTR_VALUE_BYTES_MAX = 64 * 1024
export const XATTRS_PER_INODE_MAX = 128

export const REPLICATION_MIN = 1
export const REPLICATION_MAX = 512
export const REPLICATION_DEFAULT = 3
export const BLOCK_SIZE_MIN_BYTES = CHUNK_BYTES
export const BLOCK_SIZE_MAX_BYTES = 2 * 1024 * 1024 * 1024
export const BLOCK_SIZE_DEFAULT_BYTES = 64 * 1024 * 1024

/** Bytes a file open through a mount buffers before sending them down its pipelines. */
export const OPEN_FILE_DIRTY_BYTES_MAX = 8 * 1024 * 1024
/** A file read front to back through a mount is read in windows of this size, one ahead. */
export const OPEN_FILE_READ_WINDOW_BYTES = 4 * 1024 * 1024
/** Block pipelines one open file keeps open at once (the least recently written is finished first). */
export const OPEN_FILE_PIPELINES_MAX = 4

/** A mount's own attribute cache (besides the kernel's): entries and how long they stay fresh. */
export const FUSE_ATTR_CACHE_ENTRIES_MAX = 200_000
export const FUSE_ATTR_CACHE_MS = 1_000
/** Attribute misses in one directory within a second before a mount fetches its whole listing. */
export const FUSE_PREFETCH_AFTER_MISSES = 16
/** Directories a mount tracks misses for at once. */
export const FUSE_PREFETCH_DIRS_MAX = 1024
/** The largest read or write the kernel sends a mount in one request. */
export const FUSE_IO_BYTES_MAX = 128 * 1024
/** How long a mount's open for writing waits for another client's lease to be given back before EBUSY. */
export const FUSE_LEASE_WAIT_MS = 1_000
/** Open file handles on one mount. */
export const FUSE_HANDLES_MAX = 65_536

/** Volumes one cluster holds, and the largest size one may have. */
export const VOLUMES_MAX = 10_000
export const VOLUME_SIZE_MAX_BYTES = 2 ** 50
/** Snapshots one volume keeps, and the inodes one snapshot (or restore) copies. */
export const SNAPSHOTS_PER_VOLUME_MAX = 64
export const SNAPSHOT_INODES_MAX = 1_000_000
/** Inodes `volume inspect` walks to tell where a volume's bytes are. */
export const VOLUME_INSPECT_INODES_MAX = 1_000_000

/** Entries returned by one ListStatus call. */
export const LIST_PAGE_ENTRIES_MAX = 1000
/** Unary calls in flight on one connection before the server stops reading from it (streams are bounded below). */
export const CALLS_PER_CONNECTION_MAX = 256
/** Block streams (reads, writes) open at once on one connection; one more is refused. */
export const STREAMS_PER_CONNECTION_MAX = 256
/** A connection proves it holds the cluster secret within this, or is closed. */
export const HANDSHAKE_TIMEOUT_MS = 10_000
/** A connection sends its opening hello within this, or is closed: an idle connection holds a handshake slot no longer. */
export const HELLO_TIMEOUT_MS = 2_000
/** Connections a daemon lets handshake at once; past this, new ones are closed unread. */
export const HANDSHAKES_IN_FLIGHT_MAX = 256
/**
 * One remote address's share of those slots. With every slot taken, an address
 * holding more than its share gives up its oldest handshake to a newcomer: one
 * host cannot lock out the rest (heartbeats included), and a burst from one
 * host is refused only when the daemon is full.
 */
export const HANDSHAKES_PER_ADDRESS_MAX = 64
/** Clients' reports of corrupt replicas the namenode verifies at once (asking the replica's node to check it); more are dropped. */
export const BAD_REPLICA_CHECKS_IN_FLIGHT_MAX = 64
/** The namenode signs block access tokens with a new random block key this often. */
export const BLOCK_KEY_ROTATION_MS = 10 * 60_000
/** How long a block access token issued by the namenode opens its block. */
export const BLOCK_TOKEN_LIFETIME_DEFAULT_MS = 10 * 60_000
/** Packets a writer may have sent and not yet seen acknowledged. */
export const PIPELINE_PACKETS_IN_FLIGHT_MAX = 64
/** Namespace records (inodes, entries, misses) the namenode keeps decoded-ready in memory. */
export const NAMESPACE_CACHE_ENTRIES_MAX = 256 * 1024
/** Mutations the namenode folds into one synced LevelDB batch. */
export const COMMIT_GROUP_MUTATIONS_MAX = 1024
/** How long a background mutation (see CommitBlocksRequest.background) may wait for another to share its sync. */
export const COMMIT_BACKGROUND_WAIT_MS = 2

export const RPC_TIMEOUT_DEFAULT_MS = 30_000
export const RPC_TIMEOUT_MAX_MS = 10 * 60_000
export const HEARTBEAT_DEFAULT_MS = 3_000
export const DEAD_AFTER_DEFAULT_MS = 30_000
/** A writer that has not renewed its lease for this long loses its open files to lease recovery (--lease-limit). */
export const LEASE_LIMIT_DEFAULT_MS = 60_000
export const LEASE_RENEW_INTERVAL_MS = 10_000
/** Renewals never come more often than this, however short the namenode's lease limit. */
export const LEASE_RENEW_INTERVAL_MIN_MS = 200
/** A lease limit must leave room for several renewals. */
export const LEASE_LIMIT_MIN_MS = 1_000
/** Fraction of known blocks that must be reported before safe mode ends by itself. */
export const SAFEMODE_THRESHOLD = 0.999

/** Scheduler: environment entries and retries a job spec may ask for. */
export const JOB_ENV_ENTRIES_MAX = 256
export const JOB_RETRIES_MAX = 100
/** Instances of one service. */
export const SERVICE_INSTANCES_MAX = 100
/** Services the scheduler keeps. */
export const SERVICES_MAX = 1_000
/** A job spec's size on the wire. */
export const JOB_SPEC_BYTES_MAX = 256 * 1024
/** Agents heartbeat this often; one silent for AGENT_DEAD_AFTER_DEFAULT_MS is dead and its tasks are lost. */
export const AGENT_HEARTBEAT_DEFAULT_MS = 1_000
/** The scheduler tells the namenode where it serves this often (a restarted namenode learns it again). */
export const SCHEDULER_ANNOUNCE_INTERVAL_MS = 5_000
export const AGENT_DEAD_AFTER_DEFAULT_MS = 10_000
/** After a scheduler restart, tasks recorded as running that no agent reports within this are lost and retried. */
export const RECONCILE_GRACE_DEFAULT_MS = 10_000
/** Finished jobs the scheduler keeps for `job status` and `job ls`. */
export const FINISHED_JOBS_KEPT = 1_000
/** Files an input glob may match. */
export const INPUT_FILES_MAX = 10_000

// `npm run bench -- <dfsio|nnbench|recovery|fuse|volume|sched|all> [options]`: benchmarks against a real
// multi-process cluster started for the run and always torn down, even on
// error or Ctrl-C (sched: a simulated one). Each prints a table and writes JSON under bench/results/.
import { parseArgs } from 'node:util'
import { parseSize } from '../src/common/units.js'
import { runDfsio } from './dfsio.js'
import { runFuse } from './fuse.js'
import { Cleanup } from './lib.js'
import { runNnbench } from './nnbench.js'
import { runRecovery } from './recovery.js'
import { runSched } from './sched.js'
import { runVolume } from './volume.js'

const USAGE = `usage: npm run bench -- <dfsio|nnbench|recovery|fuse|volume|sched|all> [options]

  dfsio     write and read one file at replication 1 and 3, beside the local disk
    --size SIZE          file size (default 1GiB)
    --block-size SIZE    block size (default 64MiB)
    --no-verify          skip comparing the bytes read with those written
  nnbench   namenode ops/s: create, mkdir, stat, getBlockLocations, rename, delete
    --ops N              operations of each kind at each concurrency (default 20000)
    --ops-single N       cap at 1 client, where one call is in flight (default 3000)
    --clients LIST       concurrent clients, each its own connection (default 1,8,32)
    --leveldb-ops N      synced puts in the LevelDB baseline (default 2000)
    --max-seconds S      a measurement stops starting operations after S seconds and
                         counts those done, so a slow run stays bounded (default 15)
  recovery  kill -9 a datanode holding --size of replicas: time until every block has
            3 replicas again (MB/s, beside the write rate in the same run), and a
            client write during re-replication as a ratio to one without
            (4 datanodes in 2 racks, replication 3, --heartbeat 1s --dead-after 5s)
    --size SIZE          replicas the killed datanode holds (default 1GiB)
    --write-size SIZE    the reference write and each write with and without
                         re-replication running (default 512MiB)
    --block-size SIZE    block size (default 64MiB)
    --max-wait S         bound on each wait: a node declared dead, replication
                         restored, the cluster settling (default 300)
    --no-verify          skip reading every file back at the end
    --log-level LEVEL    of every role (default warn; info logs every copy)
    --keep-logs DIR      copy every role's log to DIR before the cluster goes
  fuse      a FUSE mount of 3 datanodes (replication 3) beside a local directory, in
            child processes: sequential write + fsync and cold read (MB/s), 4 KiB
            random read and fsynced random write with fio (IOPS), create, stat and
            unlink of empty files one at a time (files/s), ls -l of a directory the
            mount has never listed (s); needs fio and python3, and root to drop the
            page cache before reads
    --size SIZE          sequential write and read (default 1GiB)
    --files N            files created, stat'ed and unlinked; entries listed (default 10000)
    --fio-seconds S      length of each fio run (default 10)
  volume    a volume (replication 3) attached to dn1 and mounted there, beside a local
            directory, in child processes: SQLite transactions of 5 inserts (tx/s) and
            point selects (queries/s) at its defaults (rollback journal,
            synchronous=FULL), and 4 KiB random writes with an fsync each with fio
            (IOPS); needs fio and python3
    --volume-size SIZE   the volume's size (default 4GiB)
    --transactions N     SQLite transactions (default 2000)
    --queries N          SQLite point selects (default 20000)
    --sql-seconds S      each SQLite phase stops after S seconds and counts those done
                         (default 60)
    --fio-seconds S      length of the fio run (default 10)
  sched     the scheduler core on a simulated cluster, no processes: share of NODE_LOCAL
            tasks with delay scheduling beside FIFO without delay (same workload),
            placement decisions/s, and DRF's share error for two roles
    --nodes LIST         simulated cluster sizes (default 100,1000)
    --sim-seconds S      simulated time jobs arrive over (default 600)
  all       dfsio, nnbench, recovery, fuse, volume (each with a cluster of its own),
            then sched
`

function positiveInt(text: string, flag: string): number {
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${flag} '${text}' must be a whole number of at least 1`)
  return n
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      size: { type: 'string', default: '1GiB' },
      'block-size': { type: 'string', default: '64MiB' },
      'no-verify': { type: 'boolean', default: false },
      ops: { type: 'string', default: '20000' },
      'ops-single': { type: 'string', default: '3000' },
      clients: { type: 'string', default: '1,8,32' },
      'leveldb-ops': { type: 'string', default: '2000' },
      'max-seconds': { type: 'string', default: '15' },
      'write-size': { type: 'string', default: '512MiB' },
      'max-wait': { type: 'string', default: '300' },
      'log-level': { type: 'string', default: 'warn' },
      'keep-logs': { type: 'string' },
      files: { type: 'string', default: '10000' },
      'fio-seconds': { type: 'string', default: '10' },
      'volume-size': { type: 'string', default: '4GiB' },
      transactions: { type: 'string', default: '2000' },
      queries: { type: 'string', default: '20000' },
      'sql-seconds': { type: 'string', default: '60' },
      nodes: { type: 'string', default: '100,1000' },
      'sim-seconds': { type: 'string', default: '600' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  const which = positionals[0]
  if (values.help || !which || positionals.length > 1 || !['dfsio', 'nnbench', 'recovery', 'fuse', 'volume', 'sched', 'all'].includes(which)) {
    ;(values.help ? process.stdout : process.stderr).write(USAGE)
    return values.help ? 0 : 2
  }
  const maxSeconds = positiveInt(values['max-seconds'], '--max-seconds')
  const clients = values.clients.split(',').map((s) => positiveInt(s.trim(), '--clients'))
  const sizeBytes = parseSize(values.size, '--size')
  if (sizeBytes < 1) throw new Error('--size must be at least 1 byte')

  const cleanup = new Cleanup()
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`bench: ${signal}: stopping the cluster and removing temporary files\n`)
    void cleanup.run().finally(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    if (which === 'dfsio' || which === 'all') {
      await runDfsio(cleanup, { sizeBytes, blockSizeBytes: parseSize(values['block-size'], '--block-size'), replications: [1, 3], verify: !values['no-verify'] })
      // Each benchmark gets a cluster of its own.
      await cleanup.run()
    }
    if (which === 'nnbench' || which === 'all') {
      await runNnbench(cleanup, {
        ops: positiveInt(values.ops, '--ops'),
        opsSingle: positiveInt(values['ops-single'], '--ops-single'),
        clients,
        maxSeconds,
        leveldbOps: positiveInt(values['leveldb-ops'], '--leveldb-ops'),
      })
      await cleanup.run()
    }
    if (which === 'recovery' || which === 'all') {
      const writeBytes = parseSize(values['write-size'], '--write-size')
      if (writeBytes < 1) throw new Error('--write-size must be at least 1 byte')
      await runRecovery(cleanup, {
        sizeBytes,
        writeBytes,
        blockSizeBytes: parseSize(values['block-size'], '--block-size'),
        maxWaitMs: positiveInt(values['max-wait'], '--max-wait') * 1000,
        verify: !values['no-verify'],
        logLevel: values['log-level'],
        logsDir: values['keep-logs'],
      })
      await cleanup.run()
    }
    if (which === 'fuse' || which === 'all') {
      await runFuse(cleanup, { sizeBytes, files: positiveInt(values.files, '--files'), fioSeconds: positiveInt(values['fio-seconds'], '--fio-seconds') })
      await cleanup.run()
    }
    if (which === 'volume' || which === 'all') {
      await runVolume(cleanup, {
        volumeSizeBytes: parseSize(values['volume-size'], '--volume-size'),
        transactions: positiveInt(values.transactions, '--transactions'),
        queries: positiveInt(values.queries, '--queries'),
        sqlSeconds: positiveInt(values['sql-seconds'], '--sql-seconds'),
        fioSeconds: positiveInt(values['fio-seconds'], '--fio-seconds'),
      })
      await cleanup.run()
    }
    if (which === 'sched' || which === 'all') {
      await runSched({ nodes: values.nodes.split(',').map((s) => positiveInt(s.trim(), '--nodes')), simSeconds: positiveInt(values['sim-seconds'], '--sim-seconds') })
    }
    return 0
  } finally {
    await cleanup.run()
  }
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`bench: ${err.message}\n`)
    process.exit(1)
  },
)

// `loam fsck` and `loam report`: what an operator asks first.
import type { Command } from 'commander'
import { fsck } from '../client/fsck.js'
import { formatBytes } from '../common/units.js'
import { clientOptions, withClient, type ClientFlags } from './fs-commands.js'
import { action, printJson } from './run.js'

export function registerAdminCommands(program: Command): void {
  clientOptions(program.command('fsck').argument('[path]', 'where to start', '/'))
    .description('check every block under a path; exit 1 unless all are healthy')
    .option('--json', 'print JSON')
    .option('-v, --verbose', 'list healthy blocks too')
    .action(
      action(async (p: string, flags: ClientFlags & { json?: boolean; verbose?: boolean }) => {
        await withClient(flags, async (client) => {
          const r = await fsck(client, p)
          if (flags.json) {
            printJson({ healthy: r.healthy, files: r.files, directories: r.directories, openForWrite: r.openForWrite, blocks: r.blocks })
          } else {
            for (const b of r.blocks) {
              if (b.state === 'HEALTHY' && !flags.verbose) continue
              const where = b.replicas.map((x) => `${x.node}${x.rack}`).join(', ') || 'no replica'
              process.stdout.write(`${b.path}: block ${b.id} (${formatBytes(b.length)}) ${b.state}: ${b.replicas.length} of ${b.expected} replicas [${where}]${b.corrupt.length ? `, corrupt on ${b.corrupt.map((x) => x.node).join(', ')}` : ''}\n`)
            }
            const count = (s: string): number => r.blocks.filter((b) => b.state === s).length
            process.stdout.write(
              `Status: ${r.healthy ? 'HEALTHY' : 'UNHEALTHY'}\n  path: ${p}\n  files: ${r.files} (${r.openForWrite} open for writing), directories: ${r.directories}\n` +
                `  blocks: ${r.blocks.length}, under-replicated: ${count('UNDER_REPLICATED')}, corrupt: ${count('CORRUPT')}, missing: ${count('MISSING')}\n`,
            )
          }
          if (!r.healthy) process.exitCode = 1
        })
      }),
    )

  const node = program.command('node').description('datanode administration')
  for (const [name, recommission, what] of [
    ['decommission', false, 'move every replica off a datanode so it can be stopped'],
    ['recommission', true, 'put a decommissioned or decommissioning datanode back in service'],
  ] as const) {
    clientOptions(node.command(name).argument('<id>', 'datanode id (see loam report)'))
      .description(what)
      .action(
        action(async (id: string, flags: ClientFlags) => {
          await withClient(flags, async (client) => {
            const r = await client.nn.call('Decommission', { nodeId: id, recommission })
            const d = r.datanodes.find((x) => x.id === id)
            process.stdout.write(`${id}: ${d?.state ?? 'unknown'}\n`)
          })
        }),
      )
  }

  clientOptions(program.command('report'))
    .description('datanodes: id, address, rack, state, capacity, used, blocks')
    .option('--json', 'print JSON')
    .action(
      action(async (flags: ClientFlags & { json?: boolean }) => {
        await withClient(flags, async (client) => {
          const r = await client.report()
          const datanodes = r.datanodes.map((d) => ({ id: d.id, address: d.address, rack: d.rack, state: d.state, capacity: d.capacityBytes, used: d.usedBytes, remaining: d.remainingBytes, blocks: d.blocks, lastHeartbeatMs: d.lastHeartbeatMs }))
          if (flags.json) {
            printJson({ safemode: r.safemode, reportedBlocks: r.reportedBlocks, totalBlocks: r.totalBlocks, datanodes })
            return
          }
          const live = datanodes.filter((d) => d.state === 'live').length
          process.stdout.write(`namenode ${client.namenode}: ${r.safemode ? `SAFE MODE (${r.reportedBlocks} of ${r.totalBlocks} blocks reported)` : 'serving'}, ${live} of ${datanodes.length} datanodes live, ${r.totalBlocks} blocks\n`)
          const rows = [['ID', 'ADDRESS', 'RACK', 'STATE', 'CAPACITY', 'USED', 'BLOCKS'], ...datanodes.map((d) => [d.id, d.address, d.rack, d.state, formatBytes(d.capacity), formatBytes(d.used), String(d.blocks)])]
          const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
          for (const row of rows) process.stdout.write(row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd() + '\n')
        })
      }),
    )
}

// `loam volume ...`: persistent volumes for stateful services.
import type { Command } from 'commander'
import { volumeJson } from '../client/json.js'
import { formatBytes, parseSize } from '../common/units.js'
import { LoamError } from '../rpc/errors.js'
import type { VolumeInfo } from '../rpc/messages.js'
import { clientOptions, withClient, type ClientFlags } from './fs-commands.js'
import { action, printJson } from './run.js'

function replication(text: string | undefined): number {
  if (text === undefined) return 0
  const n = Number(text)
  if (!Number.isInteger(n) || n < 1) throw new LoamError('invalid-argument', `--replication '${text}' must be a whole number of at least 1`)
  return n
}

function line(info: VolumeInfo): string {
  const v = info.volume!
  const where = v.attachedNode ? `attached to ${v.attachedNode} (epoch ${v.epoch}${info.holderAlive ? '' : ', node dead'})` : 'detached'
  return `${v.name}: ${formatBytes(v.usedBytes)} of ${formatBytes(v.sizeBytes)} used, replication ${v.replication}, ${where}`
}

export function registerVolumeCommands(program: Command): void {
  const volume = program.command('volume').description('persistent volumes: a named directory with a size, attached to one node at a time')

  clientOptions(volume.command('create').argument('<name>', 'lowercase letters, digits and dashes'))
    .description('create a volume (its files live under /volumes/NAME)')
    .requiredOption('--size <size>', 'its size: a quota on the logical bytes it holds (e.g. 10GiB)')
    .option('--replication <n>', 'replicas of every block (default: the cluster default)')
    .option('--block-size <size>', 'block size of its files (default: the cluster default)')
    .action(
      action(async (name: string, flags: ClientFlags & { size: string; replication?: string; blockSize?: string }) => {
        const req = { name, sizeBytes: parseSize(flags.size, '--size'), replication: replication(flags.replication), blockSizeBytes: flags.blockSize ? parseSize(flags.blockSize, '--block-size') : 0 }
        await withClient(flags, async (client) => {
          const info = await client.nn.call('CreateVolume', req)
          if (info.warning) process.stderr.write(`loam: warning: ${info.warning}\n`)
          process.stdout.write(line(info) + '\n')
        })
      }),
    )

  clientOptions(volume.command('ls'))
    .description('every volume: size, used, replication, state, attached node')
    .option('--json', 'print JSON')
    .action(
      action(async (flags: ClientFlags & { json?: boolean }) => {
        await withClient(flags, async (client) => {
          const { volumes } = await client.nn.call('ListVolumes', {})
          if (flags.json) return printJson(volumes.map(volumeJson))
          const rows = volumes.map((i) => {
            const v = i.volume!
            return [v.name, formatBytes(v.sizeBytes), formatBytes(v.usedBytes), String(v.replication), i.state, v.attachedNode || '-', String(v.epoch)]
          })
          const table = [['NAME', 'SIZE', 'USED', 'REPLICATION', 'STATE', 'NODE', 'EPOCH'], ...rows]
          const widths = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)))
          for (const r of table) process.stdout.write(r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd() + '\n')
        })
      }),
    )

  clientOptions(volume.command('inspect').argument('<name>', 'the volume'))
    .description('size, used, replication, state, attached node, epoch, and replica bytes per node')
    .option('--json', 'print JSON')
    .action(
      action(async (name: string, flags: ClientFlags & { json?: boolean }) => {
        await withClient(flags, async (client) => {
          const info = await client.nn.call('GetVolume', { name })
          if (flags.json) return printJson(volumeJson(info))
          process.stdout.write(line(info) + `\n  path: ${info.path}\n  owner: ${info.volume!.owner}\n  block size: ${formatBytes(info.volume!.blockSizeBytes)}\n  replicas:\n`)
          for (const n of info.nodes) process.stdout.write(`    ${n.nodeId}: ${formatBytes(n.bytes)}\n`)
          if (info.nodes.length === 0) process.stdout.write('    (no data yet)\n')
        })
      }),
    )

  clientOptions(volume.command('rm').argument('<name>', 'the volume'))
    .description('remove a volume and everything in it (refused while attached unless --force)')
    .option('--force', 'remove it even while attached')
    .action(
      action(async (name: string, flags: ClientFlags & { force?: boolean }) => {
        await withClient(flags, async (client) => {
          await client.nn.call('DeleteVolume', { name, force: flags.force ?? false })
        })
      }),
    )

  clientOptions(volume.command('resize').argument('<name>', 'the volume'))
    .description('change a volume size (shrinking only down to what it holds)')
    .requiredOption('--size <size>', 'the new size')
    .action(
      action(async (name: string, flags: ClientFlags & { size: string }) => {
        await withClient(flags, async (client) => {
          process.stdout.write(line(await client.nn.call('ResizeVolume', { name, sizeBytes: parseSize(flags.size, '--size') })) + '\n')
        })
      }),
    )

  clientOptions(volume.command('attach').argument('<name>', 'the volume'))
    .description('give one node the volume: an exclusive lease, renewed while the node lives, under a new epoch')
    .requiredOption('--node <id>', 'the datanode id of the node (see loam report)')
    .option('--force', 'take it from a holder whose node is dead; its writes are refused from then on')
    .action(
      action(async (name: string, flags: ClientFlags & { node: string; force?: boolean }) => {
        await withClient(flags, async (client) => {
          process.stdout.write(line(await client.nn.call('AttachVolume', { name, nodeId: flags.node, force: flags.force ?? false })) + '\n')
        })
      }),
    )

  const takeSnapshot = async (name: string, snap: string, flags: ClientFlags): Promise<void> => {
    await withClient(flags, async (client) => {
      const { snapshots } = await client.nn.call('SnapshotVolume', { volume: name, snapshot: snap })
      const s = snapshots.find((x) => x.name === snap)!
      process.stdout.write(`${name}@${snap}: ${formatBytes(s.usedBytes)}, read-only under /.snapshots/${name}/${snap}\n`)
    })
  }
  const snapshot = clientOptions(volume.command('snapshot').argument('<name>', 'the volume').argument('<snapshot>', 'a name for the snapshot'))
    .description('take a read-only, point-in-time copy of a volume (copy-on-write: no data is copied now); `snapshot rm NAME SNAP` removes one')
    .action(action(async (name: string, snap: string, flags: ClientFlags) => takeSnapshot(name, snap, flags)))
  // `snapshot rm SNAP` (one name) snapshots the volume called rm; `snapshot rm NAME SNAP` removes a snapshot.
  clientOptions(snapshot.command('rm').argument('<name>', 'the volume').argument('[snapshot]', 'the snapshot'))
    .description('remove a snapshot (blocks only it still names are freed); with one name, snapshot the volume called rm')
    .action(
      action(async (name: string, snap: string | undefined, flags: ClientFlags) => {
        if (snap === undefined) return takeSnapshot('rm', name, flags)
        await withClient(flags, async (client) => {
          await client.nn.call('DeleteSnapshot', { volume: name, snapshot: snap })
        })
      }),
    )

  clientOptions(volume.command('snapshots').argument('<name>', 'the volume'))
    .description("a volume's snapshots")
    .option('--json', 'print JSON')
    .action(
      action(async (name: string, flags: ClientFlags & { json?: boolean }) => {
        await withClient(flags, async (client) => {
          const { snapshots } = await client.nn.call('ListSnapshots', { name })
          if (flags.json) return printJson(snapshots.map((x) => ({ name: x.name, createdMs: x.createdMs, usedBytes: x.usedBytes, path: `/.snapshots/${name}/${x.name}` })))
          for (const x of snapshots) process.stdout.write(`${x.name}  ${new Date(x.createdMs).toISOString()}  ${formatBytes(x.usedBytes)}\n`)
        })
      }),
    )

  clientOptions(volume.command('restore').argument('<name>', 'the volume').argument('<snapshot>', 'the snapshot'))
    .description('make a new volume from a snapshot (sharing its blocks until they change)')
    .requiredOption('--to <new>', 'the new volume')
    .action(
      action(async (name: string, snap: string, flags: ClientFlags & { to: string }) => {
        await withClient(flags, async (client) => {
          process.stdout.write(line(await client.nn.call('RestoreSnapshot', { volume: name, snapshot: snap, to: flags.to })) + '\n')
        })
      }),
    )

  clientOptions(volume.command('detach').argument('<name>', 'the volume'))
    .description('release the volume from its node')
    .action(
      action(async (name: string, flags: ClientFlags) => {
        await withClient(flags, async (client) => {
          process.stdout.write(line(await client.nn.call('DetachVolume', { name })) + '\n')
        })
      }),
    )
}

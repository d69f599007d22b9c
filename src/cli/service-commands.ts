// `loam service deploy|ls|status|scale|rm`: long-running services, kept running where their volumes are.
import type { Command } from 'commander'
import { LoamError } from '../rpc/errors.js'
import { readSpec, withScheduler, withSchedulerOption, type SchedulerFlags } from './job-commands.js'
import { action, printJson } from './run.js'

/** One instance in `service status --json`. */
export interface InstanceJson {
  id: string
  state: string
  health: string | null
  node: string | null
  locality: string | null
  attempts: number
  restarts: number
  exitCode: number | null
  message?: string
  volumes: string[]
}
/** What `service status --json` prints. */
export interface ServiceStatusJson {
  id: string
  state: string
  instances: number
  tasks: InstanceJson[]
}

function printStatus(svc: ServiceStatusJson): void {
  const running = svc.tasks.filter((t) => t.state === 'RUNNING').length
  process.stdout.write(`${svc.id}: ${svc.state}; ${running} of ${svc.instances} instances running\n`)
  for (const t of svc.tasks) {
    const vols = t.volumes.length ? ` volumes ${t.volumes.join(',')}` : ''
    process.stdout.write(`  ${t.id}  ${t.state.padEnd(8)} ${(t.health ?? '-').padEnd(9)} ${(t.node ?? '-').padEnd(8)} ${(t.locality ?? '-').padEnd(10)} restarts ${t.restarts}${vols}${t.message ? `  (${t.message})` : ''}\n`)
  }
}

/** Prints a status the way the flags ask. */
function show(json: string, asJson?: boolean): void {
  const status = JSON.parse(json) as ServiceStatusJson
  if (asJson) printJson(status)
  else printStatus(status)
}

export function registerServiceCommands(program: Command): void {
  const service = program.command('service').description('long-running services that follow their volumes')

  withSchedulerOption(service.command('deploy').argument('<spec>', 'a JSON service spec file (- for stdin)'))
    .description('start a service: {"id", "cmd", "cpus", "mem", "instances", "env", "role", "healthCheck", "volumes": [{"name", "size", "path"}]}')
    .option('--json', 'print the status as JSON')
    .action(
      action(async (file: string, f: SchedulerFlags & { json?: boolean }) => {
        const json = await readSpec(file)
        await withScheduler(f, async (c) => show((await c.call('DeployService', { json })).json, f.json))
      }),
    )

  withSchedulerOption(service.command('status').argument('<id>', 'the service'))
    .description("a service's instances: state, health, node, restarts, volumes")
    .option('--json', 'print JSON')
    .action(
      action(async (id: string, f: SchedulerFlags & { json?: boolean }) => {
        await withScheduler(f, async (c) => show((await c.call('ServiceStatus', { id })).json, f.json))
      }),
    )

  withSchedulerOption(service.command('ls'))
    .description('every service')
    .option('--json', 'print JSON')
    .action(
      action(async (f: SchedulerFlags & { json?: boolean }) => {
        await withScheduler(f, async (c) => {
          const list = JSON.parse((await c.call('ListServices', {})).json) as Array<{ id: string; state: string; instances: number; running: number; healthy: number; volumes: string[] }>
          if (f.json) return printJson(list)
          for (const s of list) process.stdout.write(`${s.id}  ${s.state}  ${s.running}/${s.instances} running, ${s.healthy} healthy${s.volumes.length ? `  volumes ${s.volumes.join(',')}` : ''}\n`)
        })
      }),
    )

  withSchedulerOption(service.command('scale').argument('<id>', 'the service').argument('<instances>', 'how many instances to run'))
    .description('run N instances (each added instance gets volumes of its own: NAME-1, NAME-2, ...)')
    .option('--json', 'print JSON')
    .action(
      action(async (id: string, n: string, f: SchedulerFlags & { json?: boolean }) => {
        const instances = Number(n)
        if (!Number.isInteger(instances) || instances < 0) throw new LoamError('invalid-argument', `instances '${n}' must be a whole number, 0 or more`)
        await withScheduler(f, async (c) => show((await c.call('ScaleService', { id, instances })).json, f.json))
      }),
    )

  withSchedulerOption(service.command('rm').argument('<id>', 'the service'))
    .description('stop every instance and forget the service; its volumes and their data stay')
    .action(
      action(async (id: string, f: SchedulerFlags) => {
        await withScheduler(f, async (c) => show((await c.call('RemoveService', { id })).json))
      }),
    )
}

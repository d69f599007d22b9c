// Long-running services, in the style of Marathon: each instance is kept
// running; one that exits, fails its health check or loses its node starts
// again (after a backoff when it keeps failing), on the node holding the most of
// its volume's replicas, with the volume attached there under a new epoch. A
// volume still attached to a node that is gone is taken over only once the
// namenode agrees that node is dead (forced attach): the old holder is fenced.
import { LoamError, toLoamError } from '../rpc/errors.js'
import type { LaunchTask, TaskState, VolumeInfo } from '../rpc/messages.js'
import type { LoamClient } from '../client/client.js'
import type { Logger } from '../common/log.js'
import { SERVICES_MAX } from '../limits.js'
import { checkVolumeName } from '../volumes/volume.js'
import { parseServiceSpec, type ServiceDefinition } from './job-spec.js'
import { mayManage, type Requester } from './owners.js'
import * as R from './resources.js'
import { instanceVolumeName, placeService, restartDelayMs, type ServiceCandidate } from './service-placement.js'
import type { InstanceRecord, ServiceRecord, StateFile } from './state.js'

/** An instance that ran at least this long before it ended was not failing quickly: its backoff starts over. */
const QUICK_FAILURE_MS = 10_000
/** An instance whose placement failed (a volume's lease not yet free, the namenode away) tries again after this long. */
const PLACE_RETRY_MS = 1_000

/** What the scheduler lends the services: its agents and their resources. */
export interface ServiceHost {
  /** Live agents, with what is free on each. */
  candidates(): ServiceCandidate[]
  /** Whether an agent is registered and heartbeating. */
  agentAlive(agentId: string): boolean
  /** Takes resources on an agent for a launch (outside the batch queue), counted in the role's share; and gives them back. */
  hold(agentId: string, launch: string, role: string, need: R.Resources): void
  release(agentId: string, launch: string): void
  launch(agentId: string, task: LaunchTask): void
  kill(agentId: string, launch: string): void
  namenode: string
}

export function serviceLaunchId(svc: ServiceRecord, inst: InstanceRecord): string {
  return `${svc.id}.${inst.index}.${inst.attempts}`
}

function newInstance(spec: ServiceDefinition, index: number): InstanceRecord {
  return {
    index,
    state: 'PENDING',
    attempts: 0,
    agentId: '',
    node: '',
    locality: '',
    health: '',
    restarts: 0,
    quickFailures: 0,
    notBeforeMs: 0,
    startedMs: 0,
    exitCode: null,
    message: '',
    volumes: spec.volumes.map((v) => instanceVolumeName(v.name, index)),
  }
}

export class Services {
  /** Running instances by launch id. */
  private readonly byLaunch = new Map<string, { svc: ServiceRecord; inst: InstanceRecord }>()
  /** Instances being placed (namenode calls in flight), by `${service}.${index}`. */
  private readonly placing = new Set<string>()

  constructor(
    private readonly state: StateFile,
    private readonly nn: LoamClient,
    private readonly host: ServiceHost,
    private readonly log: Logger,
  ) {
    for (const svc of state.services.values()) for (const inst of svc.instances) if (inst.state === 'RUNNING') this.byLaunch.set(serviceLaunchId(svc, inst), { svc, inst })
  }

  // ------------------------------------------------------------ requests

  /** Checks the spec and its volumes (creating missing ones) before anything starts. */
  async deploy(text: string, hasJob: (id: string) => boolean, requester: Requester): Promise<ServiceRecord> {
    const spec = parseServiceSpec(text)
    if (this.state.services.has(spec.id)) throw new LoamError('exists', `service ${spec.id} exists; scale it with 'loam service scale', or remove it first`)
    if (hasJob(spec.id)) throw new LoamError('exists', `service id ${spec.id} is a job's id; choose another`)
    if (this.state.services.size >= SERVICES_MAX) throw new LoamError('no-space', `the scheduler keeps at most ${SERVICES_MAX} services`)
    const need = R.resources(spec.cpus, spec.mem)
    const agents = this.host.candidates().filter((c) => !spec.volumes.length || c.nodeId)
    if (!agents.some((c) => R.fits(need, c.total))) {
      throw new LoamError('invalid-argument', `service spec: cpus ${spec.cpus} and mem ${spec.mem} MiB are more than any ${spec.volumes.length ? 'agent with a datanode' : 'agent'} has (${agents.length} registered)`)
    }
    await this.prepareVolumes(spec, 0, spec.instances, requester)
    const svc: ServiceRecord = { id: spec.id, spec, user: requester.user, state: 'RUNNING', createdMs: Date.now(), instances: Array.from({ length: spec.instances }, (_, i) => newInstance(spec, i)) }
    this.state.services.set(svc.id, svc)
    this.state.changed()
    this.log.info({ service: svc.id, instances: spec.instances, volumes: spec.volumes.map((v) => v.name) }, 'service deployed')
    this.tick()
    return svc
  }

  async scale(id: string, instances: number, requester: Requester): Promise<ServiceRecord> {
    const svc = await this.mustManage(id, requester, 'scale')
    if (svc.state !== 'RUNNING') throw new LoamError('invalid-argument', `service ${id} is being removed`)
    const current = svc.spec.instances
    if (instances > current) await this.prepareVolumes(svc.spec, current, instances, requester)
    svc.spec = { ...svc.spec, instances }
    for (let i = 0; i < instances; i++) {
      const inst = svc.instances[i]
      if (!inst) svc.instances.push(newInstance(svc.spec, i))
      else if (inst.state === 'KILLED') Object.assign(inst, { state: 'PENDING', notBeforeMs: 0, message: 'scaled up' })
    }
    this.stopBeyond(svc, instances, `scaled down to ${instances}`)
    this.state.changed()
    this.tick()
    return svc
  }

  async remove(id: string, requester: Requester): Promise<ServiceRecord> {
    const svc = await this.mustManage(id, requester, 'remove')
    svc.state = 'REMOVING'
    this.stopBeyond(svc, 0, 'the service was removed')
    this.state.changed()
    return svc
  }

  private async mustManage(id: string, who: Requester, verb: string): Promise<ServiceRecord> {
    const svc = this.must(id)
    if (!(await mayManage(this.nn, svc.user, who))) throw new LoamError('permission', `service ${id} belongs to user ${svc.user ?? 'the superuser'}, not ${who.user}: only its owner or the superuser may ${verb} it`)
    return svc
  }

  status(id: string): unknown {
    return this.describe(this.must(id))
  }

  list(): unknown {
    return [...this.state.services.values()].map((s) => ({
      id: s.id,
      state: s.state,
      instances: s.spec.instances,
      running: s.instances.filter((i) => i.state === 'RUNNING').length,
      healthy: s.instances.filter((i) => i.state === 'RUNNING' && i.health === 'HEALTHY').length,
      volumes: s.spec.volumes.map((v) => v.name),
    }))
  }

  /** The task a `loam logs` id names: `${service}.${index}` is its current (or last) launch. */
  locate(taskId: string): { launch: string; agentId: string; state: string } | undefined {
    const m = /^(.*)\.(\d+)$/.exec(taskId)
    const svc = m ? this.state.services.get(m[1]!) : undefined
    const inst = svc?.instances[Number(m![2])]
    if (!svc || !inst || inst.attempts === 0) return undefined
    return { launch: serviceLaunchId(svc, inst), agentId: inst.agentId, state: inst.state }
  }

  // ------------------------------------------------------------ what agents say

  /** Whether a launch is a service task this scheduler runs now. */
  isCurrent(launch: string, agentId: string): boolean {
    const found = this.byLaunch.get(launch)
    return found !== undefined && found.inst.state === 'RUNNING' && found.inst.agentId === agentId
  }

  /** A running task's report (its health); true when it is a current service task that should go on running. */
  running(launch: string, agentId: string, t: TaskState): boolean {
    if (!this.isCurrent(launch, agentId)) return false
    const { svc, inst } = this.byLaunch.get(launch)!
    // Removed or scaled away: the kill asked for is not persisted, so a report after a restart asks it again.
    if (svc.state !== 'RUNNING' || inst.index >= svc.spec.instances) return false
    if (inst.health !== t.health) {
      inst.health = t.health
      this.state.changed()
    }
    return true
  }

  /** A task ended: the instance starts again unless it was stopped on purpose. */
  ended(launch: string, agentId: string, t: TaskState): boolean {
    if (!this.isCurrent(launch, agentId)) return false
    const { svc, inst } = this.byLaunch.get(launch)!
    this.byLaunch.delete(launch)
    this.host.release(agentId, launch)
    inst.exitCode = t.state === 'KILLED' && !t.message.startsWith('health check') ? null : t.exitCode
    inst.health = ''
    const quick = Date.now() - inst.startedMs < QUICK_FAILURE_MS
    this.restartOrStop(svc, inst, `${t.state.toLowerCase()}: ${t.message}`, quick)
    return true
  }

  /** An agent is gone: its instances start again elsewhere at once. */
  agentLost(agentId: string, why: string): void {
    for (const [launch, { svc, inst }] of [...this.byLaunch]) {
      if (inst.agentId !== agentId) continue
      this.byLaunch.delete(launch)
      this.restartOrStop(svc, inst, `lost with agent ${agentId}: ${why}`, false)
    }
  }

  /** What a current service launch holds on its agent, and for which role (undefined for any other launch). */
  demandOf(launch: string, agentId: string): { role: string; resources: R.Resources } | undefined {
    if (!this.isCurrent(launch, agentId)) return undefined
    const { svc } = this.byLaunch.get(launch)!
    return { role: svc.spec.role, resources: R.resources(svc.spec.cpus, svc.spec.mem) }
  }

  /** Running instances no agent reported after a restart: started again. adopted: launches agents reported. */
  reconcile(adopted: Set<string>): void {
    for (const [launch, { svc, inst }] of [...this.byLaunch]) {
      if (adopted.has(launch)) continue
      this.byLaunch.delete(launch)
      this.restartOrStop(svc, inst, 'no agent reported it after the scheduler restarted', false)
    }
  }

  /** Places every instance that is due; called often (cheap when nothing waits). */
  tick(): void {
    const now = Date.now()
    for (const svc of [...this.state.services.values()]) {
      if (svc.state === 'REMOVING') {
        if (svc.instances.every((i) => i.state !== 'RUNNING')) void this.forget(svc)
        continue
      }
      for (const inst of svc.instances) {
        if (inst.state === 'PENDING' && inst.notBeforeMs <= now && !this.placing.has(`${svc.id}.${inst.index}`)) void this.place(svc, inst)
      }
    }
  }

  // ------------------------------------------------------------ inside

  private restartOrStop(svc: ServiceRecord, inst: InstanceRecord, why: string, quick: boolean): void {
    inst.message = why
    if (svc.state === 'REMOVING' || inst.index >= svc.spec.instances) {
      inst.state = 'KILLED'
      this.dropStopped(svc)
    } else {
      inst.state = 'PENDING'
      inst.restarts++
      inst.quickFailures = quick ? inst.quickFailures + 1 : 0
      inst.notBeforeMs = Date.now() + restartDelayMs(inst.quickFailures)
      this.log.warn({ service: svc.id, instance: inst.index, why, restartInMs: inst.notBeforeMs - Date.now() }, 'service instance ended; it starts again')
    }
    this.state.changed()
  }

  private stopBeyond(svc: ServiceRecord, count: number, why: string): void {
    for (const inst of svc.instances) {
      if (inst.index < count) continue
      if (inst.state === 'RUNNING') this.host.kill(inst.agentId, serviceLaunchId(svc, inst))
      else if (inst.state === 'PENDING') Object.assign(inst, { state: 'KILLED', message: why })
    }
    this.dropStopped(svc)
  }

  /** Instances past the count that run no more are dropped from the end; their volumes are detached (their data stays). */
  private dropStopped(svc: ServiceRecord): void {
    while (svc.instances.length > svc.spec.instances && svc.instances.at(-1)!.state === 'KILLED') void this.detach(svc.instances.pop()!.volumes)
  }

  private async detach(names: string[]): Promise<void> {
    for (const name of names) {
      await this.nn.nn.call('DetachVolume', { name }).catch((err: unknown) => this.log.warn({ volume: name, err: toLoamError(err).message }, 'cannot detach a volume no instance uses'))
    }
  }

  /** A removed service's record goes once nothing runs; its volumes stay (detached), with their data. */
  private async forget(svc: ServiceRecord): Promise<void> {
    if (!this.state.services.has(svc.id)) return
    this.state.services.delete(svc.id)
    this.state.changed()
    await this.detach([...new Set(svc.instances.flatMap((i) => i.volumes))])
    this.log.info({ service: svc.id }, 'service removed')
  }

  /**
   * Instances from..to-1 get their volumes. An existing one must be free (attached to no node,
   * used by no other service) and the requester's own (or the requester the superuser); the
   * missing ones are created, as the requester, only once every check passed: a refused spec
   * creates nothing.
   */
  private async prepareVolumes(spec: ServiceDefinition, from: number, to: number, requester: Requester): Promise<void> {
    const as = { user: requester.user, groups: requester.groups }
    const missing: Array<{ name: string; sizeBytes: number; replication: number }> = []
    for (let i = from; i < to; i++) {
      for (const v of spec.volumes) {
        const name = instanceVolumeName(v.name, i)
        checkVolumeName(name)
        const owner = [...this.state.services.values()].find((s) => s.id !== spec.id && s.instances.some((inst) => inst.volumes.includes(name)))
        if (owner) throw new LoamError('lease', `service spec: volume ${name} belongs to service ${owner.id}; remove that service or name another volume`)
        let info: VolumeInfo
        try {
          info = await this.nn.nn.call('GetVolume', { name })
        } catch (err) {
          if (toLoamError(err).code !== 'not-found') throw err
          missing.push({ name, sizeBytes: v.sizeBytes, replication: v.replication })
          continue
        }
        const vol = info.volume!
        if (vol.attachedNode) throw new LoamError('lease', `service spec: volume ${name} is attached to node ${vol.attachedNode}; detach it there first (loam volume detach ${name})`)
        if (vol.owner !== requester.user) await this.checkVolumeOwner(name, vol.owner, requester)
      }
    }
    const created: string[] = []
    try {
      for (const m of missing) {
        await this.nn.nn.call('CreateVolume', { name: m.name, sizeBytes: m.sizeBytes, replication: m.replication, blockSizeBytes: 0 }, as)
        created.push(m.name)
        this.log.info({ volume: m.name, sizeBytes: m.sizeBytes, replication: m.replication, owner: requester.user }, 'created a volume for a service')
      }
    } catch (err) {
      // One could not be made (no space, a name taken meanwhile): the ones made for this spec go, empty as they are.
      for (const name of created) await this.nn.nn.call('DeleteVolume', { name, force: true }, as).catch((e: unknown) => this.log.warn({ volume: name, err: toLoamError(e).message }, 'cannot remove a volume made for a refused spec'))
      throw err
    }
  }

  /** A volume someone else owns is the superuser's to use. */
  private async checkVolumeOwner(name: string, owner: string, requester: Requester): Promise<void> {
    if (!(await mayManage(this.nn, owner, requester))) {
      throw new LoamError('permission', `service spec: volumes: volume ${name} belongs to user ${owner}, not ${requester.user}; name a volume of your own`)
    }
  }

  private async place(svc: ServiceRecord, inst: InstanceRecord): Promise<void> {
    const key = `${svc.id}.${inst.index}`
    this.placing.add(key)
    try {
      const bytes = new Map<string, number>()
      const infos: VolumeInfo[] = []
      for (const name of inst.volumes) {
        const info = await this.nn.nn.call('GetVolume', { name })
        infos.push(info)
        for (const n of info.nodes) bytes.set(n.nodeId, (bytes.get(n.nodeId) ?? 0) + n.bytes)
      }
      const need = R.resources(svc.spec.cpus, svc.spec.mem)
      const choice = placeService(this.host.candidates(), need, bytes, inst.volumes.length > 0)
      if (!choice) {
        this.waiting(inst, `waiting for an agent${inst.volumes.length ? ' with a datanode' : ''} with ${R.format(need)} free`)
        return
      }
      for (const info of infos) await this.attach(info, choice.nodeId)
      // The world may have moved while the namenode answered.
      if (inst.state !== 'PENDING' || svc.state !== 'RUNNING' || !this.host.agentAlive(choice.agentId) || this.state.services.get(svc.id) !== svc) return
      if (!this.host.candidates().some((c) => c.agentId === choice.agentId && R.fits(need, c.free))) return
      this.start(svc, inst, choice.agentId, choice.nodeId, choice.locality)
    } catch (err) {
      // Most often a lease the namenode does not yet let go of: tried again shortly.
      inst.notBeforeMs = Date.now() + PLACE_RETRY_MS
      this.waiting(inst, toLoamError(err).message)
    } finally {
      this.placing.delete(key)
    }
  }

  /** Attaches a volume to node: a live holder with no instance there lets go first; a dead one is taken over (fenced). */
  private async attach(info: VolumeInfo, nodeId: string): Promise<void> {
    const name = info.volume!.name
    const holder = info.volume!.attachedNode
    if (holder === nodeId) return
    if (holder) {
      const holderRuns = [...this.byLaunch.values()].some(({ inst }) => inst.node === holder && inst.volumes.includes(name))
      if (holderRuns) throw new LoamError('lease', `volume ${name} is in use by a running instance on ${holder}`)
      const holderAgent = this.host.candidates().find((c) => c.nodeId === holder)
      if (holderAgent) {
        await this.nn.nn.call('DetachVolume', { name })
      } else {
        // The namenode refuses while it still hears from the holder's datanode: the instance waits and tries again.
        await this.nn.nn.call('AttachVolume', { name, nodeId, force: true })
        this.log.warn({ volume: name, from: holder, to: nodeId }, 'took over a volume from a lost node')
        return
      }
    }
    await this.nn.nn.call('AttachVolume', { name, nodeId, force: false })
  }

  private start(svc: ServiceRecord, inst: InstanceRecord, agentId: string, nodeId: string, locality: string): void {
    // Held first: should the host refuse, the instance stays PENDING and is placed again.
    this.host.hold(agentId, serviceLaunchId(svc, { ...inst, attempts: inst.attempts + 1 }), svc.spec.role, R.resources(svc.spec.cpus, svc.spec.mem))
    inst.state = 'RUNNING'
    inst.attempts++
    inst.agentId = agentId
    inst.node = nodeId || agentId
    inst.locality = locality
    inst.health = ''
    inst.startedMs = Date.now()
    inst.message = ''
    const launch = serviceLaunchId(svc, inst)
    this.byLaunch.set(launch, { svc, inst })
    const env: Record<string, string> = {
      ...svc.spec.env,
      LOAM_TASK_ID: `${svc.id}.${inst.index}`,
      LOAM_TASK_INDEX: String(inst.index),
      LOAM_SERVICE_ID: svc.id,
      LOAM_NAMENODE: this.host.namenode,
    }
    const volumes = svc.spec.volumes.map((v, i) => ({ name: inst.volumes[i]!, path: v.path, nodeId }))
    this.host.launch(agentId, { taskId: launch, jobId: svc.id, cmd: svc.spec.cmd, env, cpus: svc.spec.cpus, memMib: svc.spec.mem, volumes, healthCheck: svc.spec.healthCheck, user: svc.user ?? '' })
    this.state.changed()
    this.log.info({ service: svc.id, instance: inst.index, launch, agent: agentId, node: nodeId, locality }, 'service instance launched')
  }

  private waiting(inst: InstanceRecord, why: string): void {
    if (inst.message !== why) {
      inst.message = why
      this.state.changed()
      this.log.info({ instance: inst.index, why }, 'service instance waits')
    }
  }

  private must(id: string): ServiceRecord {
    const svc = this.state.services.get(id)
    if (!svc) throw new LoamError('not-found', `service ${id}: no such service (see 'loam service ls')`)
    return svc
  }

  private describe(svc: ServiceRecord): unknown {
    return {
      id: svc.id,
      state: svc.state,
      instances: svc.spec.instances,
      role: svc.spec.role,
      cmd: svc.spec.cmd,
      volumes: svc.spec.volumes.map((v) => ({ name: v.name, size: v.sizeBytes, path: v.path })),
      tasks: svc.instances.map((i) => ({
        id: `${svc.id}.${i.index}`,
        index: i.index,
        state: i.state,
        health: i.health || null,
        node: i.node || null,
        agent: i.agentId || null,
        locality: i.locality || null,
        attempts: i.attempts,
        restarts: i.restarts,
        exitCode: i.exitCode,
        message: i.message || undefined,
        volumes: i.volumes,
      })),
    }
  }
}

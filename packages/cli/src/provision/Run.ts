/**
 * `mcp node provision`, run: the operator's side. Reads the CLI config's [provision] section
 * (the CA, the master's token file, the fleet's UID, the releases), finds the release archive
 * for the node's architecture and checks it against its checksum, logs in with the pinned host
 * key, runs the steps (Provision.ts) printing each as it ends, and waits for the agent through
 * the master and then directly.
 */
import * as Names from "@mcp/domain/Names"
import { Effect, Option } from "effect"
import { existsSync, readFileSync } from "node:fs"
import { isIP } from "node:net"
import { homedir } from "node:os"
import { join } from "node:path"
import * as Arguments from "../Arguments.js"
import type * as CliConfig from "../CliConfig.js"
import * as Common from "../commands/Common.js"
import { print } from "../Output.js"
import { CommandFailed, UsageError } from "../Report.js"
import * as AgentReady from "./AgentReady.js"
import * as Artifacts from "./Artifacts.js"
import * as FleetFile from "./FleetFile.js"
import * as Layout from "./Layout.js"
import { type Outcome, provision, ProvisionFailed, type StepResult, StepRefused } from "./Provision.js"
import * as Ssh from "./Ssh.js"

export interface ProvisionOptions {
  readonly name: string
  readonly ssh: string
  readonly role: "worker" | "edge" | "master"
  readonly address: Option.Option<string>
  readonly port: number
  readonly acceptHostKey: Option.Option<string>
  readonly identity: Option.Option<string>
  readonly artifact: Option.Option<string>
  readonly wait: number
  readonly dryRun: boolean
  readonly config: Option.Option<string>
  readonly json: boolean
}

const defaultIdentity = (): string | undefined =>
  ["id_ed25519", "id_ecdsa", "id_rsa"].map((f) => join(homedir(), ".ssh", f)).find((f) => existsSync(f))

/**
 * What provisioning and upgrades need on the operator's side: the CLI config with its
 * [provision] section and a master address, and the SSH key to log in with.
 */
export const operatorSide = (config: Option.Option<string>, identityOption: Option.Option<string>) =>
  Effect.gen(function* () {
    const cfg = yield* Common.loadConfig(config)
    const settings = cfg.provision
    if (settings === undefined) {
      return yield* new CommandFailed({
        message: `${cfg.path} has no [provision] section: add ca_dir (the platform CA, with ca.key) and tokens_file (the master's token file) there`
      })
    }
    if (cfg.master.length === 0) return yield* new CommandFailed({ message: `${cfg.path}: master = ["host:port"] is needed; the node's agent is given these addresses` })
    const identity = Option.getOrUndefined(identityOption) ?? settings.identity ?? defaultIdentity()
    if (identity === undefined) return yield* new CommandFailed({ message: `no SSH key: pass --identity, set provision.identity, or make one with ssh-keygen -t ed25519` })
    return { cfg, settings, identity }
  })

/** An SSH session on a node, its host key judged against MCP's known_hosts and the operator's own. */
export const connectNode = (target: Ssh.SshTarget, settings: CliConfig.ProvisionSettings, identity: string, accept: Option.Option<string>) =>
  Ssh.connect(target, {
    identity,
    knownHostsFile: settings.known_hosts,
    alsoTrusted: [join(homedir(), ".ssh", "known_hosts")],
    ...(Option.isSome(accept) ? { accept: accept.value } : {})
  })

const pad = (s: string, n: number) => (s.length >= n ? s : s + " ".repeat(n - s.length))
const stepLine = (r: StepResult) => `  ${pad(r.step, 18)} ${pad(r.status, 13)} ${r.detail}`

const summary = (outcome: Outcome, dryRun: boolean): string => {
  const changes = outcome.steps.filter((s) => s.status !== "unchanged").length
  if (changes === 0) return dryRun ? `${outcome.node}: nothing would change` : `${outcome.node}: nothing to change; the agent is registered and answering`
  return dryRun
    ? `${outcome.node}: dry run, ${changes} step${changes === 1 ? "" : "s"} would change (nothing was written)`
    : `${outcome.node}: provisioned (${changes} step${changes === 1 ? "" : "s"} changed); the agent is registered and answering`
}

export const provisionCommand = (o: ProvisionOptions) =>
  Effect.gen(function* () {
    const node = yield* Arguments.decode(Names.NodeName, "<name>")(o.name)
    const target = yield* Effect.mapError(Ssh.parseTarget(o.ssh), (e) => new UsageError({ message: `--ssh: ${e.message}` }))
    const address = Option.getOrElse(o.address, () => target.host)
    if (isIP(address) === 0) return yield* new UsageError({ message: `--address: the node's IP address is needed (the SSH host ${target.host} is not one); DNS records and proxy backends use it` })
    if (o.port < 1 || o.port > 65535) return yield* new UsageError({ message: `--port: ${o.port} is not a port (1-65535)` })
    if (o.wait < 1) return yield* new UsageError({ message: `--wait: give a number of seconds, at least 1` })

    const { cfg, settings, identity } = yield* operatorSide(o.config, o.identity)
    const caPem = yield* Effect.try({
      try: () => readFileSync(join(settings.ca_dir, "ca.crt"), "utf8"),
      catch: (e) => new CommandFailed({ message: `provision.ca_dir: cannot read ca.crt there (${(e as Error).message}); make the CA with mcp ca init` })
    })
    const fleetUid = (yield* FleetFile.readFleet(settings.fleet_file)).mcp_uid
    const artifactFor = (arch: string) => Effect.mapError(Artifacts.artifactFor(o.artifact, settings.releases_dir, arch), (e) => new StepRefused({ reason: e.message }))

    const out = (line: string) => (o.json ? Effect.void : print(line))
    yield* out(`${o.dryRun ? "checking" : "provisioning"} ${node} (${o.role}) over SSH at ${Ssh.knownHostsName(target.host, target.port)}`)
    const outcome = yield* Effect.scoped(Effect.gen(function* () {
      const session = yield* connectNode(target, settings, identity, o.acceptHostKey).pipe(Effect.mapError((e) => new ProvisionFailed({ node, step: "connect", reason: e.message, done: [] })))
      return yield* provision(session, {
        node,
        role: o.role,
        address,
        port: o.port,
        masters: cfg.master,
        internalZone: cfg.internal_zone,
        artifactFor,
        caDir: settings.ca_dir,
        caPem,
        tokensFile: settings.tokens_file,
        fleetUid,
        dryRun: o.dryRun
      }, {
        onStep: (r) => out(stepLine(r)),
        onUpload: (what, bytes) => out(`  uploading ${what} (${(bytes / 1024 / 1024).toFixed(1)} MiB)`),
        onUserId: (uid) =>
          uid === fleetUid
            ? Effect.void
            : Effect.mapError(FleetFile.updateFleet(settings.fleet_file, (f) => ({ ...f, mcp_uid: uid })), (e) => new StepRefused({ reason: e.message })),
        awaitAgent: (version) =>
          Effect.mapError(
            AgentReady.awaitAgent(cfg, { node, address: Layout.hostPort(address, o.port), waitSeconds: o.wait, version }),
            (e) => new StepRefused({ reason: e.reason })
          ).pipe(Effect.map((ready) => `registered with the master (healthy, ${version}), answers at https://${ready.address}/agent`))
      })
    }))
    // How to reach the node again (mcp agent upgrade).
    if (!o.dryRun) {
      yield* FleetFile.updateFleet(settings.fleet_file, (f) => ({
        ...f,
        nodes: { ...f.nodes, [node]: { ssh: o.ssh, address, port: o.port, role: o.role } }
      }))
    }
    yield* o.json
      ? print(JSON.stringify({ node: outcome.node, dryRun: o.dryRun, changed: outcome.steps.some((s) => s.status === "changed"), uid: outcome.uid, steps: outcome.steps }, null, 2))
      : print(summary(outcome, o.dryRun))
  })

/**
 * A fleet on one machine, as real processes: a platform CA with certificates for every daemon,
 * a token file, CLI and daemon configs, and helpers that spawn `mcp-agent` / `mcp-master` and
 * run `mcp`. Used by the quick start and by the multi-process tests; every child is killed by pid.
 *
 * Identities are per node, as in a real fleet: the master calls agents with its own system token
 * ("master", admin), and an agent that registers with a master does so with a system token named
 * after its node (role guest: the master's /control needs the name, not a role) and a certificate
 * naming the node (the master checks it before calling the agent). `enrolNode` makes both;
 * `writeAgentConfig` starts it for an agent with masters and `spawnDaemon` waits for it.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { Pki, TokenFile } from "@mcp/rpc"
import { Effect, Redacted } from "effect"
import { type ChildProcess, execFile } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { freeTcpPort, startManagedProcess } from "./ManagedProcess.js"
import { type DaemonUnit, unitEnvironment, unitNodeFlags } from "./Units.js"

const repo = fileURLToPath(new URL("../..", import.meta.url))
export const bins = {
  mcp: join(repo, "packages/cli/bin/mcp.js"),
  agent: join(repo, "packages/agent/bin/mcp-agent.js"),
  master: join(repo, "packages/master/bin/mcp-master.js")
}

export interface Fleet {
  readonly dir: string
  readonly caDir: string
  readonly tokenFile: string
  /** The CLI config, pointing at `masters` (if any). */
  readonly cliConfig: string
  readonly operatorToken: string
  /** The master's system token (admin, named "master") for its calls to agents. */
  readonly systemTokenFile: string
}

/** The system token file an enrolled node's agent presents to the master ([master] token_file). */
export const nodeTokenFile = (fleet: Fleet, node: string) => join(fleet.dir, `${node}.token`)

// One enrolment per node and fleet, however often its config is written; by config path, the one
// spawnDaemon waits for.
const enrolments = new Map<string, Promise<void>>()
const enrolmentOf = new Map<string, Promise<void>>()
// createToken rewrites the whole token file: agents started together (Promise.all) must not
// enrol at once, or one's token is written over by another's.
const tokenFileTurns = new Map<string, Promise<unknown>>()

/**
 * What an operator does to let a node in: a certificate named after the node (CN and DNS SAN,
 * valid at 127.0.0.1 and localhost; skipped with `cert: false` when the caller brings its own that
 * names the node) and a system token named after it, role guest, written to `nodeTokenFile`.
 * The daemons reread the token file, so this may run after they started.
 */
export const enrolNode = (fleet: Fleet, node: string, options: { readonly cert?: boolean } = {}): Promise<void> => {
  const key = `${fleet.dir}\u0000${node}`
  const known = enrolments.get(key)
  if (known !== undefined) return known
  const previous = tokenFileTurns.get(fleet.tokenFile) ?? Promise.resolve()
  const enrolment = previous.catch(() => undefined).then(() => Effect.runPromise(
    Effect.gen(function* () {
      if (options.cert !== false) {
        yield* Pki.issueCertificate(fleet.caDir, node, { ips: ["127.0.0.1"], dns: ["localhost", node], usage: "both" })
      }
      return yield* TokenFile.createToken(fleet.tokenFile, { name: node, kind: "system", role: "guest" })
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )).then((token) => writeFileSync(nodeTokenFile(fleet, node), Redacted.value(token), { mode: 0o600 }))
  tokenFileTurns.set(fleet.tokenFile, enrolment)
  enrolments.set(key, enrolment)
  // Awaited by spawnDaemon (or the caller); not an unhandled rejection in between.
  enrolment.catch(() => undefined)
  return enrolment
}

/** A free TCP port on 127.0.0.1 (bound, then released). */
export const freePort = freeTcpPort

export const prepare = async (dir: string, options: { readonly masters?: ReadonlyArray<string> } = {}): Promise<Fleet> => {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const caDir = join(dir, "ca")
  const tokenFile = join(dir, "tokens.toml")
  const systemTokenFile = join(dir, "system.token")
  const operatorTokenFile = join(dir, "operator.token")
  const { operator, system } = await Effect.runPromise(
    Effect.gen(function* () {
      yield* Pki.initCa(caDir, { commonName: "MCP local fleet CA" })
      yield* Pki.issueCertificate(caDir, "server", { ips: ["127.0.0.1"], dns: ["localhost"], usage: "both" })
      const operator = yield* TokenFile.createToken(tokenFile, { name: "operator", kind: "human", role: "admin" })
      // The master's, for its calls to agents; each agent gets its own from enrolNode.
      const system = yield* TokenFile.createToken(tokenFile, { name: "master", kind: "system", role: "admin" })
      return { operator: Redacted.value(operator), system: Redacted.value(system) }
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )
  writeFileSync(systemTokenFile, system, { mode: 0o600 })
  writeFileSync(operatorTokenFile, operator, { mode: 0o600 })
  const cliConfig = join(dir, "mcp.toml")
  writeCliConfig({ dir, caDir, cliConfig, operatorTokenFile, masters: options.masters ?? [] })
  return { dir, caDir, tokenFile, cliConfig, operatorToken: operator, systemTokenFile }
}

export const writeCliConfig = (o: { dir: string; caDir: string; cliConfig: string; operatorTokenFile: string; masters: ReadonlyArray<string> }) =>
  writeFileSync(
    o.cliConfig,
    [
      `master = [${o.masters.map((m) => JSON.stringify(m)).join(", ")}]`,
      `ca = ${JSON.stringify(join(o.caDir, "ca.crt"))}`,
      `token_file = ${JSON.stringify(o.operatorTokenFile)}`,
      `services_dir = ${JSON.stringify(join(repo, "test/fixtures/services/good"))}`,
      ""
    ].join("\n")
  )

export interface AgentOptions {
  readonly node: string
  readonly port: number
  readonly socket: string
  readonly role?: "master" | "worker" | "edge"
  readonly masters?: ReadonlyArray<string>
  readonly extra?: string
  /** The IP the RPC server listens on; default 127.0.0.1. */
  readonly host?: string
  /** The agent's `node_address`; default 127.0.0.1. */
  readonly nodeAddress?: string
  /**
   * The TLS certificate's file stem in the CA dir (made with Pki.issueCertificate); default the
   * node's own (enrolNode) when it has masters, else "server". The master's calls need it to name the node.
   */
  readonly cert?: string
}

/**
 * Writes the agent's config. With masters, the node is enrolled (`enrolNode`: its token, and its
 * certificate unless `cert` names another) in the background; spawnDaemon on this config waits for it.
 */
export const writeAgentConfig = (fleet: Fleet, o: AgentOptions): string => {
  const path = join(fleet.dir, `${o.node}.agent.toml`)
  const enrolled = o.masters !== undefined
  if (enrolled) enrolmentOf.set(path, enrolNode(fleet, o.node, { cert: o.cert === undefined }))
  const cert = o.cert ?? (enrolled ? o.node : "server")
  writeFileSync(
    path,
    [
      `node = ${JSON.stringify(o.node)}`,
      `role = ${JSON.stringify(o.role ?? "worker")}`,
      `listen = "${o.host ?? "127.0.0.1"}:${o.port}"`,
      `node_address = "${o.nodeAddress ?? "127.0.0.1"}"`,
      `data_dir = ${JSON.stringify(join(fleet.dir, o.node))}`,
      `stop_timeout_seconds = 2`,
      o.extra ?? "",
      `[tls]`,
      `cert = ${JSON.stringify(join(fleet.caDir, `${cert}.crt`))}`,
      `key = ${JSON.stringify(join(fleet.caDir, `${cert}.key`))}`,
      `ca = ${JSON.stringify(join(fleet.caDir, "ca.crt"))}`,
      `[auth]`,
      `token_file = ${JSON.stringify(fleet.tokenFile)}`,
      `[runtime]`,
      `socket = ${JSON.stringify(o.socket)}`,
      ...(o.masters === undefined ? [] : [`[master]`, `addresses = [${o.masters.map((m) => JSON.stringify(m)).join(", ")}]`, `token_file = ${JSON.stringify(nodeTokenFile(fleet, o.node))}`]),
      ""
    ].join("\n")
  )
  return path
}

export interface MasterOptions {
  readonly port: number
  readonly interval?: string
  readonly missThreshold?: number
  readonly probeTimeout?: string
  readonly nodes?: ReadonlyArray<{ readonly name: string; readonly role: string; readonly addresses: ReadonlyArray<string> }>
  /** The IP the master listens on; default 127.0.0.1. */
  readonly host?: string
  /** The TLS certificate's file stem in the CA dir; default "server". */
  readonly cert?: string
  /** More TOML tables (e.g. `[edge]`), written before `[[nodes]]`. */
  readonly extra?: string
}

export const writeMasterConfig = (fleet: Fleet, o: MasterOptions): string => {
  const path = join(fleet.dir, "master.toml")
  writeFileSync(
    path,
    [
      `listen = "${o.host ?? "127.0.0.1"}:${o.port}"`,
      `data_dir = ${JSON.stringify(join(fleet.dir, "master"))}`,
      `agent_token_file = ${JSON.stringify(fleet.systemTokenFile)}`,
      `fanout_timeout = "2s"`,
      `[tls]`,
      `cert = ${JSON.stringify(join(fleet.caDir, `${o.cert ?? "server"}.crt`))}`,
      `key = ${JSON.stringify(join(fleet.caDir, `${o.cert ?? "server"}.key`))}`,
      `ca = ${JSON.stringify(join(fleet.caDir, "ca.crt"))}`,
      `[auth]`,
      `token_file = ${JSON.stringify(fleet.tokenFile)}`,
      `[heartbeat]`,
      `interval = ${JSON.stringify(o.interval ?? "1s")}`,
      `miss_threshold = ${o.missThreshold ?? 3}`,
      `probe_timeout = ${JSON.stringify(o.probeTimeout ?? "1s")}`,
      o.extra ?? "",
      ...(o.nodes ?? []).flatMap((n) => [`[[nodes]]`, `name = ${JSON.stringify(n.name)}`, `role = ${JSON.stringify(n.role)}`, `addresses = [${n.addresses.map((a) => JSON.stringify(a)).join(", ")}]`]),
      ""
    ].join("\n")
  )
  return path
}

export interface Daemon {
  readonly child: ChildProcess
  readonly pid: number
  /** Everything it printed so far (tests look for log lines in it). */
  readonly output: string
  /** SIGTERM, then SIGKILL after 5 s; resolves when it has exited. */
  readonly stop: () => Promise<void>
  readonly kill9: () => Promise<void>
}

/**
 * Spawns a daemon with what its systemd unit gives it (its NODE_OPTIONS as node flags and the rest
 * of its environment: test/support/Units.ts) and waits for the line that says it listens. `prefix` runs it under another
 * command that execs it (e.g. `ip netns exec <ns>`), so the pid is still the daemon's.
 */
export const spawnDaemon = async (bin: string, configPath: string, ready = /listening on/, timeoutMs = 30_000, prefix: ReadonlyArray<string> = []): Promise<Daemon> => {
  // An agent's token and certificate (writeAgentConfig) before it starts; a no-op otherwise.
  await enrolmentOf.get(configPath)
  const unit: DaemonUnit = bin.includes("mcp-agent") ? "mcp-agent" : "mcp-master"
  const { NODE_OPTIONS: _, ...unitEnv } = unitEnvironment(unit)
  const [file, ...args] = [...prefix, process.execPath, ...unitNodeFlags(unit), bin, "--config", configPath]
  const daemon = await startManagedProcess({
    name: bin,
    command: file!,
    args,
    env: { ...process.env, ...unitEnv },
    ready: { awaiting: `a line matching ${ready}`, output: ready },
    timeoutMs,
    // Tests search a daemon's whole log for what it did, not only the latest lines.
    tailChars: Infinity
  })
  return {
    child: daemon.child,
    pid: daemon.pid,
    get output() {
      return daemon.output()
    },
    stop: daemon.stop,
    kill9: async () => {
      daemon.signal("SIGKILL")
      await daemon.exited
    }
  }
}

/** Runs the CLI with the fleet's config (and `env` added to this process's); resolves with its exit code and output. */
export const mcp = (fleet: Fleet, args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [bins.mcp, ...args, "--config", fleet.cliConfig], { maxBuffer: 16 * 1024 * 1024, env: { ...process.env, ...env } }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })
    )
  )

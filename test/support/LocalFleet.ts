/**
 * A fleet on one machine, as real processes: a platform CA with certificates for every daemon,
 * a token file, CLI and daemon configs, and helpers that spawn `mcp-agent` / `mcp-master` and
 * run `mcp`. Used by the quick start and by the multi-process tests; every child is killed by pid.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { Pki, TokenFile } from "@mcp/rpc"
import { Effect, Redacted } from "effect"
import { type ChildProcess, execFile } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { freeTcpPort, startManagedProcess } from "./ManagedProcess.js"

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
  /** A system token daemons use to call each other. */
  readonly systemTokenFile: string
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
      const system = yield* TokenFile.createToken(tokenFile, { name: "fleet", kind: "system", role: "admin" })
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
  /** The TLS certificate's file stem in the CA dir (made with Pki.issueCertificate); default "server". */
  readonly cert?: string
}

export const writeAgentConfig = (fleet: Fleet, o: AgentOptions): string => {
  const path = join(fleet.dir, `${o.node}.agent.toml`)
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
      `cert = ${JSON.stringify(join(fleet.caDir, `${o.cert ?? "server"}.crt`))}`,
      `key = ${JSON.stringify(join(fleet.caDir, `${o.cert ?? "server"}.key`))}`,
      `ca = ${JSON.stringify(join(fleet.caDir, "ca.crt"))}`,
      `[auth]`,
      `token_file = ${JSON.stringify(fleet.tokenFile)}`,
      `[runtime]`,
      `socket = ${JSON.stringify(o.socket)}`,
      ...(o.masters === undefined ? [] : [`[master]`, `addresses = [${o.masters.map((m) => JSON.stringify(m)).join(", ")}]`, `token_file = ${JSON.stringify(fleet.systemTokenFile)}`]),
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
 * Spawns a daemon and waits for the line that says it listens. `prefix` runs it under another
 * command that execs it (e.g. `ip netns exec <ns>`), so the pid is still the daemon's.
 */
export const spawnDaemon = async (bin: string, configPath: string, ready = /listening on/, timeoutMs = 30_000, prefix: ReadonlyArray<string> = []): Promise<Daemon> => {
  const [file, ...args] = [...prefix, process.execPath, bin, "--config", configPath]
  const daemon = await startManagedProcess({
    name: bin,
    command: file!,
    args,
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

/** Runs the CLI with the fleet's config; resolves with its exit code and output. */
export const mcp = (fleet: Fleet, args: ReadonlyArray<string>) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [bins.mcp, ...args, "--config", fleet.cliConfig], { maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })
    )
  )

/**
 * Fleet commands that only the master answers: nodes, the supervision tree, syncing
 * definitions, and recovering agents (also --direct, straight to one agent).
 */
import { Args, Command, Options } from "@effect/cli"
import { Names, Node, type Operations, Validation } from "@mcp/domain"
import { Effect, Either, Option } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import * as Arguments from "../Arguments.js"
import { print, table } from "../Output.js"
import { CommandFailed } from "../Report.js"
import * as AgentStatus from "./AgentStatus.js"
import * as Common from "./Common.js"
import { provision } from "./Provision.js"
import { upgrade } from "./Upgrade.js"

const bytes = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(1)}G` : `${(n / 1e6).toFixed(0)}M`)

export const formatNodes = (nodes: ReadonlyArray<Operations.NodeView>) =>
  table(
    ["NODE", "ROLE", "HEALTH", "ADDRESSES", "VERSION", "LAST HEARTBEAT", "INTERVAL", "DEADLINE", "CPU", "MEM FREE", "DISK FREE", "CONTAINERS"],
    nodes.map((n) => [
      n.info.name, n.info.role, n.health, n.info.addresses.join(","), n.info.version, n.lastHeartbeat ?? "never",
      n.heartbeatIntervalMs === undefined ? "-" : `${(n.heartbeatIntervalMs / 1000).toFixed(1)}s`,
      n.heartbeatDeadline ?? "-",
      n.resources === undefined ? "-" : `${n.resources.cpuCores} (load ${n.resources.load1.toFixed(2)})`,
      n.resources === undefined ? "-" : `${bytes(n.resources.memoryFreeBytes)}/${bytes(n.resources.memoryTotalBytes)}`,
      n.resources === undefined ? "-" : bytes(n.resources.diskFreeBytes),
      n.resources === undefined ? "-" : String(n.resources.containers)
    ])
  )

const list = Command.make("list", { config: Common.config, json: Common.json }, (o) =>
  Effect.gen(function* () {
    const nodes = yield* (yield* Common.masterClient(yield* Common.loadConfig(o.config))).call((master) => master.NodesList())
    yield* print(o.json ? JSON.stringify(nodes, null, 2) : formatNodes(nodes))
  })
).pipe(Command.withDescription("list the fleet's nodes with health and resources"))

const add = Command.make(
  "add",
  {
    name: Args.text({ name: "name" }),
    address: Args.text({ name: "address" }).pipe(Args.atLeast(1)),
    role: Options.choice("role", ["worker", "edge", "master"]).pipe(Options.withDefault("worker" as const)),
    config: Common.config
  },
  (o) =>
    Effect.gen(function* () {
      const name = yield* Arguments.decode(Names.NodeName, "<name>")(o.name)
      const addresses = yield* Effect.forEach(o.address, Arguments.decode(Node.NodeAddress, "<address>"))
      const master = yield* Common.masterClient(yield* Common.loadConfig(o.config))
      yield* master.call((m) => m.NodesAdd({ info: { name, role: o.role, addresses, arch: "unknown", version: "unknown" } }))
      yield* print(`added ${o.role} node ${name} at ${addresses.join(", ")}; it turns healthy once its agent heartbeats or answers a probe`)
    })
).pipe(Command.withDescription("add a node by name and agent address(es), in order of preference"))

const remove = Command.make("remove", { name: Args.text({ name: "name" }), config: Common.config }, (o) =>
  Effect.gen(function* () {
    const node = yield* Arguments.decode(Names.NodeName, "<name>")(o.name)
    yield* (yield* Common.masterClient(yield* Common.loadConfig(o.config))).call((master) => master.NodesRemove({ node }))
    yield* print(`removed node ${node}`)
  })
).pipe(Command.withDescription("remove a node that runs no services"))

export const node = Command.make("node").pipe(Command.withSubcommands([list, add, remove, provision]), Command.withDescription("the fleet's nodes"))

const printTree = (n: Operations.SupervisionNode, prefix: string, last: boolean, root: boolean): Array<string> => {
  const line = `${root ? "" : `${prefix}${last ? "└── " : "├── "}`}${n.name}  [${n.state}${n.restarts > 0 ? `, ${n.restarts} restarts` : ""}${n.lastError ? `, last error: ${n.lastError}` : ""}]`
  const childPrefix = root ? "" : `${prefix}${last ? "    " : "│   "}`
  return [line, ...n.children.flatMap((c, i) => printTree(c, childPrefix, i === n.children.length - 1, false))]
}

export const tree = Command.make("tree", { config: Common.config, json: Common.json }, (o) =>
  Effect.gen(function* () {
    const t = yield* (yield* Common.masterClient(yield* Common.loadConfig(o.config))).call((master) => master.Tree())
    yield* print(o.json ? JSON.stringify(t, null, 2) : printTree(t, "", true, true).join("\n"))
  })
).pipe(Command.withDescription("show the master's supervision tree"))

/** The services_dir's definition files, read now; a file that cannot be read fails the sync. */
const readDefinitions = (dir: string) =>
  Effect.try({
    try: () => readdirSync(dir).filter((f) => f.endsWith(".toml")).sort().map((f) => ({ file: f, text: readFileSync(join(dir, f), "utf8") })),
    catch: (e) => new CommandFailed({ message: `cannot read the definitions in services_dir ${dir}: ${(e as Error).message}` })
  })

export const sync = Command.make("sync", { config: Common.config, json: Common.json }, (o) =>
  Effect.gen(function* () {
    const cfg = yield* Common.loadConfig(o.config)
    const files = yield* readDefinitions(cfg.services_dir)
    const definitions: Array<unknown> = []
    const problems: Array<string> = []
    for (const { file, text } of files) {
      const parsed = Validation.parseToml(text)
      const decoded = Either.flatMap(parsed, (raw) => Either.map(Validation.decodeDefinition(raw, { internalZone: cfg.internal_zone }), () => raw))
      if (Either.isLeft(decoded)) problems.push(...decoded.left.map((p) => `${file}: ${p.path}: ${p.message}`))
      else definitions.push(decoded.right)
    }
    if (problems.length > 0) return yield* new CommandFailed({ message: `nothing synced; fix these first:\n${problems.join("\n")}` })
    const result = yield* (yield* Common.masterClient(cfg)).call((master) => master.Sync({ definitions }))
    yield* print(o.json ? JSON.stringify(result, null, 2) : `synced ${files.length} definitions from ${cfg.services_dir}: ${result.stored.length} stored, ${result.unchanged.length} unchanged`)
  })
).pipe(Command.withDescription("push every service definition in services_dir to the master"))

const recover = Command.make(
  "recover",
  {
    node: Common.node.pipe(Options.withDescription("the node to recover (default: all); with --direct, its agent's host:port")),
    force: Options.boolean("force"),
    config: Common.config,
    direct: Common.direct,
    json: Common.json
  },
  (o) =>
    Effect.gen(function* () {
      const target = yield* Common.target(o.direct, o.node)
      const node = target._tag === "Master" ? yield* Arguments.decodeOption(Names.NodeName, "--node")(o.node) : Option.none()
      const cfg = yield* Common.loadConfig(o.config)
      const reports = target._tag === "Agent"
        ? [yield* (yield* Common.agentClient(cfg, [target.address])).call((agent) => agent.Recover({ force: o.force }))]
        : yield* (yield* Common.masterClient(cfg)).call((master) =>
            master.AgentRecover({ force: o.force, ...Option.match(node, { onNone: () => ({}), onSome: (node) => ({ node }) }) })
          )
      if (o.json) return yield* print(JSON.stringify(reports, null, 2))
      yield* print(table(["NODE", "SERVICE", "COMPONENT", "ACTION", "DETAIL"], reports.flatMap((r) => r.actions.map((a) => [r.node, a.service, a.component, a.action, a.detail]))))
    })
).pipe(Command.withDescription("recreate containers the engine lost, from the agents' registries (--direct --node host:port works without the master)"))

export const agent = Command.make("agent").pipe(Command.withSubcommands([recover, AgentStatus.status, upgrade]), Command.withDescription("agent operations"))

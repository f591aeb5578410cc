/**
 * Fleet commands that only the master answers: nodes, the supervision tree, syncing
 * definitions, and recovering agents (also --direct, straight to one agent).
 */
import { Args, Command, Options } from "@effect/cli"
import { type Operations, Validation } from "@mcp/domain"
import { Console, Effect, Either, Option } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { describeError, fail, table } from "../Output.js"
import * as Common from "./Common.js"

const report = <A, E, R>(effect: Effect.Effect<A, E, R>) => effect.pipe(Effect.catchAll((e) => fail(describeError(e))), Effect.scoped)

const bytes = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(1)}G` : `${(n / 1e6).toFixed(0)}M`)

export const formatNodes = (nodes: ReadonlyArray<Operations.NodeView>) =>
  table(
    ["NODE", "ROLE", "HEALTH", "ADDRESSES", "VERSION", "LAST HEARTBEAT", "CPU", "MEM FREE", "DISK FREE", "CONTAINERS"],
    nodes.map((n) => [
      n.info.name, n.info.role, n.health, n.info.addresses.join(","), n.info.version, n.lastHeartbeat ?? "never",
      n.resources === undefined ? "-" : `${n.resources.cpuCores} (load ${n.resources.load1.toFixed(2)})`,
      n.resources === undefined ? "-" : `${bytes(n.resources.memoryFreeBytes)}/${bytes(n.resources.memoryTotalBytes)}`,
      n.resources === undefined ? "-" : bytes(n.resources.diskFreeBytes),
      n.resources === undefined ? "-" : String(n.resources.containers)
    ])
  )

const list = Command.make("list", { config: Common.config, json: Common.json }, (o) =>
  report(Effect.gen(function* () {
    const nodes = yield* (yield* Common.masterClient(yield* Common.loadConfig(o.config))).NodesList()
    yield* Console.log(o.json ? JSON.stringify(nodes, null, 2) : formatNodes(nodes))
  }))
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
    report(Effect.gen(function* () {
      const client = yield* Common.masterClient(yield* Common.loadConfig(o.config))
      yield* client.NodesAdd({ info: { name: o.name as never, role: o.role, addresses: o.address, arch: "unknown", version: "unknown" } })
      yield* Console.log(`added ${o.role} node ${o.name} at ${o.address.join(", ")}; it turns healthy once its agent heartbeats or answers a probe`)
    }))
).pipe(Command.withDescription("add a node by name and agent address(es), in order of preference"))

const remove = Command.make("remove", { name: Args.text({ name: "name" }), config: Common.config }, (o) =>
  report(Effect.gen(function* () {
    yield* (yield* Common.masterClient(yield* Common.loadConfig(o.config))).NodesRemove({ node: o.name as never })
    yield* Console.log(`removed node ${o.name}`)
  }))
).pipe(Command.withDescription("remove a node that runs no services"))

export const node = Command.make("node").pipe(Command.withSubcommands([list, add, remove]), Command.withDescription("the fleet's nodes"))

const printTree = (n: Operations.SupervisionNode, prefix: string, last: boolean, root: boolean): Array<string> => {
  const line = `${root ? "" : `${prefix}${last ? "└── " : "├── "}`}${n.name}  [${n.state}${n.restarts > 0 ? `, ${n.restarts} restarts` : ""}${n.lastError ? `, last error: ${n.lastError}` : ""}]`
  const childPrefix = root ? "" : `${prefix}${last ? "    " : "│   "}`
  return [line, ...n.children.flatMap((c, i) => printTree(c, childPrefix, i === n.children.length - 1, false))]
}

export const tree = Command.make("tree", { config: Common.config, json: Common.json }, (o) =>
  report(Effect.gen(function* () {
    const t = yield* (yield* Common.masterClient(yield* Common.loadConfig(o.config))).Tree()
    yield* Console.log(o.json ? JSON.stringify(t, null, 2) : printTree(t, "", true, true).join("\n"))
  }))
).pipe(Command.withDescription("show the master's supervision tree"))

export const sync = Command.make("sync", { config: Common.config, json: Common.json }, (o) =>
  report(Effect.gen(function* () {
    const cfg = yield* Common.loadConfig(o.config)
    const files = readdirSync(cfg.services_dir).filter((f) => f.endsWith(".toml")).sort()
    const definitions: Array<unknown> = []
    const problems: Array<string> = []
    for (const f of files) {
      const parsed = Validation.parseToml(readFileSync(join(cfg.services_dir, f), "utf8"))
      const decoded = Either.flatMap(parsed, (raw) => Either.map(Validation.decodeDefinition(raw, { internalZone: cfg.internal_zone }), () => raw))
      if (Either.isLeft(decoded)) problems.push(...decoded.left.map((p) => `${f}: ${p.path}: ${p.message}`))
      else definitions.push(decoded.right)
    }
    if (problems.length > 0) return yield* fail(`nothing synced; fix these first:\n${problems.join("\n")}`)
    const result = yield* (yield* Common.masterClient(cfg)).Sync({ definitions })
    yield* Console.log(o.json ? JSON.stringify(result, null, 2) : `synced ${files.length} definitions from ${cfg.services_dir}: ${result.stored.length} stored, ${result.unchanged.length} unchanged`)
  }))
).pipe(Command.withDescription("push every service definition in services_dir to the master"))

const recover = Command.make(
  "recover",
  { node: Common.node, force: Options.boolean("force"), config: Common.config, direct: Common.direct, json: Common.json },
  (o) =>
    report(Effect.gen(function* () {
      const cfg = yield* Common.loadConfig(o.config)
      const reports = o.direct
        ? [yield* (yield* Common.agentClient(cfg, o.node)).Recover({ force: o.force })]
        : yield* (yield* Common.masterClient(cfg)).AgentRecover({ force: o.force, ...Option.match(o.node, { onNone: () => ({}), onSome: (n) => ({ node: n as never }) }) })
      if (o.json) return yield* Console.log(JSON.stringify(reports, null, 2))
      yield* Console.log(table(["NODE", "SERVICE", "COMPONENT", "ACTION", "DETAIL"], reports.flatMap((r) => r.actions.map((a) => [r.node, a.service, a.component, a.action, a.detail]))))
    }))
).pipe(Command.withDescription("recreate containers the engine lost, from the agents' registries (--direct --node host:port works without the master)"))

export const agent = Command.make("agent").pipe(Command.withSubcommands([recover]), Command.withDescription("agent operations"))

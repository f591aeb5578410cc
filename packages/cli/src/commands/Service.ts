/**
 * Service commands: deploy, stop, start, restart, undeploy, ps, status, logs, events. Each goes
 * to the master, or with --direct to one agent. Deploys print live progress lines.
 */
import { Args, Command, Options } from "@effect/cli"
import { Deploy, ServiceDefinition, type Status, Validation } from "@mcp/domain"
import { Console, Effect, Either, Option, Schema, Stream } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { describeError, fail, table } from "../Output.js"
import * as Common from "./Common.js"

const serviceArg = Args.text({ name: "service" })

/** Every failure ends as one line on stderr and exit code 1. */
const report = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(Effect.catchAll((e) => fail(describeError(e))), Effect.scoped)

export const formatStatuses = (statuses: ReadonlyArray<Status.ServiceStatus>): string =>
  table(
    ["SERVICE", "NODE", "COMPONENT", "STATE", "VERSION", "PORTS", "ROUTES"],
    statuses.flatMap((s) =>
      s.components.length === 0
        ? [[s.service, s.node, "-", s.active ? "no components" : "stopped", "-", "-", "-"]]
        : s.components.map((c) => [
            s.service,
            s.node,
            c.name,
            s.active ? c.state : c.state === "running" ? "running (inactive)" : "stopped",
            c.version,
            c.routes.map((r) => String(r.hostPort)).join(",") || "-",
            c.routes.map((r) => `${r.hostname}:${r.listener}/${r.mode}`).join(",") || "-"
          ])
    )
  )

const readDefinition = (servicesDir: string, service: string, file: Option.Option<string>, internalZone: string) =>
  Effect.gen(function* () {
    const path = Option.getOrElse(file, () => join(servicesDir, `${service}.toml`))
    let text: string
    try {
      text = readFileSync(path, "utf8")
    } catch (e) {
      return yield* Effect.fail(new Error(`cannot read the definition of ${service} at ${path} (${(e as Error).message}); pass --file`))
    }
    const decoded = Validation.decodeDefinitionToml(text, { internalZone })
    if (Either.isLeft(decoded)) {
      return yield* Effect.fail(new Error(`${path} is invalid:\n` + decoded.left.map((p) => `  ${path}: ${p.path}: ${p.message}`).join("\n")))
    }
    if (decoded.right.name !== service) {
      return yield* Effect.fail(new Error(`${path} defines service "${decoded.right.name}", not "${service}"`))
    }
    return decoded.right
  })

const progressLine = (e: Deploy.DeployEvent): string | undefined => {
  switch (e._tag) {
    case "DeployStep":
      return e.status === "started" ? undefined : `  [${e.node}] ${e.step}: ${e.status}${e.detail ? ` (${e.detail})` : ""}`
    case "DeployPlanned": {
      const p = e.plan
      return [
        `plan for ${p.service} on ${p.node} (${p.placementReason}):`,
        `  images: ${p.images.join(", ")}`,
        `  ports to allocate: ${p.portsToAllocate}`,
        ...p.routes.map((r) => `  route: ${r.hostname}:${r.listener} (${r.mode}${r.public ? ", public" : ""}) -> ${r.component}`),
        ...p.dnsRecords.map((d) => `  dns: ${d}`),
        ...p.edgeRoutes.map((r) => `  edge: ${r.hostname} on ${r.edgeNode}`),
        ...p.changes.map((c) => `  change: ${c}`)
      ].join("\n")
    }
    case "DeployDone":
      return formatStatuses([e.status])
  }
}

export const deploy = Command.make(
  "deploy",
  {
    service: serviceArg,
    file: Options.file("file").pipe(Options.withDescription("the definition file (default: <services_dir>/<service>.toml)"), Options.optional),
    dryRun: Options.boolean("dry-run").pipe(Options.withDescription("print the plan and change nothing")),
    config: Common.config,
    direct: Common.direct,
    node: Common.node,
    json: Common.json
  },
  (o) =>
    report(
      Effect.gen(function* () {
        const cfg = yield* Common.loadConfig(o.config)
        const definition = yield* readDefinition(cfg.services_dir, o.service, o.file, cfg.internal_zone)
        const encoded = Schema.encodeSync(ServiceDefinition.ServiceDefinition)(definition)
        if (!o.json) yield* Console.log(`${o.dryRun ? "planning" : "deploying"} ${definition.name}${o.direct ? ` on ${Option.getOrElse(o.node, () => "?")}` : ""}...`)
        const stream = o.direct
          ? (yield* Common.agentClient(cfg, o.node)).Deploy({ definition: encoded, dryRun: o.dryRun })
          : (yield* Common.masterClient(cfg)).Deploy({ definition: encoded, dryRun: o.dryRun })
        const events: Array<Deploy.DeployEvent> = []
        yield* Stream.runForEach(stream, (e) =>
          Effect.gen(function* () {
            events.push(e)
            if (o.json) return
            const line = progressLine(e)
            if (line !== undefined) yield* Console.log(line)
          })
        )
        if (o.json) yield* Console.log(JSON.stringify(events, null, 2))
      })
    )
).pipe(Command.withDescription("deploy (or redeploy) a service from its definition"))

const lifecycle = (name: "stop" | "start" | "restart" | "undeploy", description: string) =>
  Command.make(name, { service: serviceArg, config: Common.config, direct: Common.direct, node: Common.node, json: Common.json }, (o) =>
    report(
      Effect.gen(function* () {
        const cfg = yield* Common.loadConfig(o.config)
        const rpc = ({ stop: "Stop", start: "Start", restart: "Restart", undeploy: "Undeploy" } as const)[name]
        const result: unknown = o.direct
          ? yield* (yield* Common.agentClient(cfg, o.node))[rpc]({ service: o.service as never })
          : yield* (yield* Common.masterClient(cfg))[rpc]({ service: o.service as never })
        if (o.json) yield* Console.log(JSON.stringify(result ?? { service: o.service, undeployed: true }, null, 2))
        else if (result !== undefined) yield* Console.log(formatStatuses([result as Status.ServiceStatus]))
        else yield* Console.log(`${o.service}: undeployed`)
      })
    )
  ).pipe(Command.withDescription(description))

export const stop = lifecycle("stop", "stop a service: DNS, then routes, then containers")
export const start = lifecycle("start", "start a stopped service")
export const restart = lifecycle("restart", "restart a service's containers")
export const undeploy = lifecycle("undeploy", "remove a service: routes, DNS, containers, ports and certificates")

export const ps = Command.make("ps", { config: Common.config, direct: Common.direct, node: Common.node, json: Common.json }, (o) =>
  report(
    Effect.gen(function* () {
      const cfg = yield* Common.loadConfig(o.config)
      if (o.direct) {
        const statuses = yield* (yield* Common.agentClient(cfg, o.node)).Ps()
        yield* Console.log(o.json ? JSON.stringify(statuses, null, 2) : formatStatuses(statuses))
        return
      }
      const fleet = yield* (yield* Common.masterClient(cfg)).Ps()
      if (o.json) return yield* Console.log(JSON.stringify(fleet, null, 2))
      yield* Console.log(formatStatuses(fleet.services))
      for (const u of fleet.unreachable) yield* Console.log(`node ${u.node}: unreachable (${u.reason})`)
    })
  )
).pipe(Command.withDescription("list services and their containers"))

export const status = Command.make("status", { service: serviceArg, config: Common.config, direct: Common.direct, node: Common.node, json: Common.json }, (o) =>
  report(
    Effect.gen(function* () {
      const cfg = yield* Common.loadConfig(o.config)
      const s = o.direct
        ? yield* (yield* Common.agentClient(cfg, o.node)).Status({ service: o.service as never })
        : yield* (yield* Common.masterClient(cfg)).Status({ service: o.service as never })
      yield* Console.log(o.json ? JSON.stringify(s, null, 2) : formatStatuses([s]))
    })
  )
).pipe(Command.withDescription("show one service"))

export const logs = Command.make(
  "logs",
  {
    service: serviceArg,
    component: Options.text("component").pipe(Options.optional),
    follow: Options.boolean("follow").pipe(Options.withAlias("f")),
    tail: Options.integer("tail").pipe(Options.withDefault(100)),
    config: Common.config,
    direct: Common.direct,
    node: Common.node
  },
  (o) =>
    report(
      Effect.gen(function* () {
        const cfg = yield* Common.loadConfig(o.config)
        const payload = { service: o.service as never, follow: o.follow, tail: o.tail, ...Option.match(o.component, { onNone: () => ({}), onSome: (c) => ({ component: c as never }) }) }
        const stream = o.direct ? (yield* Common.agentClient(cfg, o.node)).Logs(payload) : (yield* Common.masterClient(cfg)).Logs(payload)
        yield* Stream.runForEach(stream, (l) => (l.stream === "stderr" ? Console.error(`${l.component} | ${l.line}`) : Console.log(`${l.component} | ${l.line}`)))
      })
    )
).pipe(Command.withDescription("print a service's container logs"))

export const events = Command.make(
  "events",
  { follow: Options.boolean("follow").pipe(Options.withAlias("f")), limit: Options.integer("limit").pipe(Options.withDefault(100)), config: Common.config, direct: Common.direct, node: Common.node, json: Common.json },
  (o) =>
    report(
      Effect.gen(function* () {
        const cfg = yield* Common.loadConfig(o.config)
        const stream = o.direct ? (yield* Common.agentClient(cfg, o.node)).Events({ follow: o.follow, limit: o.limit }) : (yield* Common.masterClient(cfg)).Events({ follow: o.follow, limit: o.limit })
        yield* Stream.runForEach(stream, (e) => Console.log(o.json ? JSON.stringify(e) : `${e.at}  ${e.node}  ${e.kind.padEnd(7)} ${e.service ?? "-"}  ${e.message}`))
      })
    )
).pipe(Command.withDescription("print fleet events (deploys, health changes, drift)"))

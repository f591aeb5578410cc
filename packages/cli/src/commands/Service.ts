/**
 * Service commands: deploy, stop, start, restart, undeploy, logs, events (ps and status are in
 * Status.ts). Each goes to the master, or with --direct to one agent. Deploys print live progress
 * lines.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Deploy, Events, Names, ServiceDefinition, type Status, Validation } from "@mcp/domain"
import { Effect, Either, Option, Schema, Stream } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import * as Arguments from "../Arguments.js"
import { print, printError } from "../Output.js"
import { CommandFailed } from "../Report.js"
import * as Common from "./Common.js"
import { formatEvent } from "./Events.js"
import { formatStatuses } from "./Status.js"

// ps and status live in ./Status.js, which loads without what deploy needs (ServiceDefinition, Validation).
export { formatStatuses, ps, status } from "./Status.js"

const serviceArg = Args.text({ name: "service" })
const serviceName = Arguments.decode(Names.ServiceName, "<service>")

const readDefinition = (servicesDir: string, service: string, file: Option.Option<string>, internalZone: string) =>
  Effect.gen(function* () {
    const path = Option.getOrElse(file, () => join(servicesDir, `${service}.toml`))
    let text: string
    try {
      text = readFileSync(path, "utf8")
    } catch (e) {
      return yield* new CommandFailed({ message: `cannot read the definition of ${service} at ${path} (${(e as Error).message}); pass --file` })
    }
    const decoded = Validation.decodeDefinitionToml(text, { internalZone })
    if (Either.isLeft(decoded)) {
      return yield* new CommandFailed({ message: `${path} is invalid:\n` + decoded.left.map((p) => `  ${path}: ${p.path}: ${p.message}`).join("\n") })
    }
    if (decoded.right.name !== service) {
      return yield* new CommandFailed({ message: `${path} defines service "${decoded.right.name}", not "${service}"` })
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
    Effect.gen(function* () {
      const service = yield* serviceName(o.service)
      const target = yield* Common.target(o.direct, o.node)
      const cfg = yield* Common.loadConfig(o.config)
      const definition = yield* readDefinition(cfg.services_dir, service, o.file, cfg.internal_zone)
      const encoded = Schema.encodeSync(ServiceDefinition.ServiceDefinition)(definition)
      if (!o.json) yield* print(`${o.dryRun ? "planning" : "deploying"} ${definition.name}${target._tag === "Agent" ? ` on ${target.address}` : ""}...`)
      const payload = { definition: encoded, dryRun: o.dryRun }
      const stream = target._tag === "Agent"
        ? (yield* Common.agentClient(cfg, [target.address])).stream((agent) => agent.Deploy(payload))
        : (yield* Common.masterClient(cfg)).stream((master) => master.Deploy(payload))
      const events: Array<Deploy.DeployEvent> = []
      yield* Stream.runForEach(stream, (e) =>
        Effect.gen(function* () {
          events.push(e)
          if (o.json) return
          const line = progressLine(e)
          if (line !== undefined) yield* print(line)
        })
      )
      if (o.json) yield* print(JSON.stringify(events, null, 2))
    })
).pipe(Command.withDescription("deploy (or redeploy) a service from its definition"))

type Lifecycle = "stop" | "start" | "restart" | "undeploy"

/** The lifecycle RPCs, as both the master and an agent serve them. */
interface LifecycleRpcs<E> {
  readonly Stop: (payload: { readonly service: Names.ServiceName }) => Effect.Effect<Status.ServiceStatus, E>
  readonly Start: (payload: { readonly service: Names.ServiceName }) => Effect.Effect<Status.ServiceStatus, E>
  readonly Restart: (payload: { readonly service: Names.ServiceName }) => Effect.Effect<Status.ServiceStatus, E>
  readonly Undeploy: (payload: { readonly service: Names.ServiceName }) => Effect.Effect<void, E>
}

/** The service's status afterwards, or undefined once undeployed. */
const sendLifecycle = <E>(client: LifecycleRpcs<E>, name: Lifecycle, service: Names.ServiceName): Effect.Effect<Status.ServiceStatus | undefined, E> => {
  switch (name) {
    case "stop":
      return client.Stop({ service })
    case "start":
      return client.Start({ service })
    case "restart":
      return client.Restart({ service })
    case "undeploy":
      return Effect.as(client.Undeploy({ service }), undefined)
  }
}

const lifecycle = (name: Lifecycle, description: string) =>
  Command.make(name, { service: serviceArg, config: Common.config, direct: Common.direct, node: Common.node, json: Common.json }, (o) =>
    Effect.gen(function* () {
      const service = yield* serviceName(o.service)
      const target = yield* Common.target(o.direct, o.node)
      const cfg = yield* Common.loadConfig(o.config)
      const result = target._tag === "Agent"
        ? yield* (yield* Common.agentClient(cfg, [target.address])).call((agent) => sendLifecycle(agent, name, service))
        : yield* (yield* Common.masterClient(cfg)).call((master) => sendLifecycle(master, name, service))
      if (o.json) yield* print(JSON.stringify(result ?? { service, undeployed: true }, null, 2))
      else if (result !== undefined) yield* print(formatStatuses([result]))
      else yield* print(`${service}: undeployed`)
    })
  ).pipe(Command.withDescription(description))

export const stop = lifecycle("stop", "stop a service: DNS, then routes, then containers")
export const start = lifecycle("start", "start a stopped service")
export const restart = lifecycle("restart", "restart a service's containers")
export const undeploy = lifecycle("undeploy", "remove a service: routes, DNS, containers, ports and certificates")

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
    Effect.gen(function* () {
      const service = yield* serviceName(o.service)
      const component = yield* Arguments.decodeOption(Names.ComponentName, "--component")(o.component)
      const target = yield* Common.target(o.direct, o.node)
      const cfg = yield* Common.loadConfig(o.config)
      const payload = { service, follow: o.follow, tail: o.tail, ...Option.match(component, { onNone: () => ({}), onSome: (component) => ({ component }) }) }
      const stream = target._tag === "Agent"
        ? (yield* Common.agentClient(cfg, [target.address])).stream((agent) => agent.Logs(payload))
        : (yield* Common.masterClient(cfg)).stream((master) => master.Logs(payload))
      yield* Stream.runForEach(stream, (l) => (l.stream === "stderr" ? printError(`${l.component} | ${l.line}`) : print(`${l.component} | ${l.line}`)))
    })
).pipe(Command.withDescription("print a service's container logs"))

export const events = Command.make(
  "events",
  {
    follow: Options.boolean("follow").pipe(Options.withAlias("f")),
    limit: Options.integer("limit").pipe(Options.withDefault(100)),
    kind: Options.choice("kind", Events.EventKind.literals).pipe(Options.optional, Options.withDescription("only events of this kind (audit: who called what)")),
    who: Options.text("who").pipe(Options.optional, Options.withDescription("only events caused by this caller (a token's name)")),
    service: Options.text("service").pipe(Options.optional, Options.withDescription("only events about this service")),
    config: Common.config,
    direct: Common.direct,
    node: Common.node,
    json: Common.json
  },
  (o) =>
    Effect.gen(function* () {
      const target = yield* Common.target(o.direct, o.node)
      const cfg = yield* Common.loadConfig(o.config)
      const payload = {
        follow: o.follow,
        limit: o.limit,
        ...Option.match(o.kind, { onNone: () => ({}), onSome: (kind) => ({ kind }) }),
        ...Option.match(o.who, { onNone: () => ({}), onSome: (who) => ({ who }) }),
        ...Option.match(o.service, { onNone: () => ({}), onSome: (service) => ({ service }) })
      }
      const stream = target._tag === "Agent"
        ? (yield* Common.agentClient(cfg, [target.address])).stream((agent) => agent.Events(payload))
        : (yield* Common.masterClient(cfg)).stream((master) => master.Events(payload))
      yield* Stream.runForEach(stream, (e) => print(formatEvent(e, o.json)))
    })
).pipe(Command.withDescription("print fleet events (deploys, health changes, drift, and who called what: --kind audit --who <name>)"))

/**
 * ps and status: what runs where, from the master or with --direct from one agent. Apart from
 * Service.ts, so that these commands, the most frequent, load none of what a deploy needs.
 */
// Modules by their own paths, not packages' index: in the CLI's bundle importing an index
// initialises every module it re-exports (see scripts/build.mjs, cjsOptions), on every command.
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Names from "@mcp/domain/Names"
import type * as Status from "@mcp/domain/Status"
import { Effect } from "effect"
import * as Arguments from "../Arguments.js"
import { print, table } from "../Output.js"
import * as Common from "./Common.js"

const serviceArg = Args.text({ name: "service" })
const serviceName = Arguments.decode(Names.ServiceName, "<service>")

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

export const ps = Command.make("ps", { config: Common.config, direct: Common.direct, node: Common.node, json: Common.json }, (o) =>
  Effect.gen(function* () {
    const target = yield* Common.target(o.direct, o.node)
    const cfg = yield* Common.loadConfig(o.config)
    if (target._tag === "Agent") {
      const statuses = yield* (yield* Common.agentClient(cfg, [target.address])).call((agent) => agent.Ps())
      yield* print(o.json ? JSON.stringify(statuses, null, 2) : formatStatuses(statuses))
      return
    }
    const fleet = yield* (yield* Common.masterClient(cfg)).call((master) => master.Ps())
    if (o.json) return yield* print(JSON.stringify(fleet, null, 2))
    yield* print(formatStatuses(fleet.services))
    for (const u of fleet.unreachable) yield* print(`node ${u.node}: unreachable (${u.reason})`)
  })
).pipe(Command.withDescription("list services and their containers"))

export const status = Command.make("status", { service: serviceArg, config: Common.config, direct: Common.direct, node: Common.node, json: Common.json }, (o) =>
  Effect.gen(function* () {
    const service = yield* serviceName(o.service)
    const target = yield* Common.target(o.direct, o.node)
    const cfg = yield* Common.loadConfig(o.config)
    const s = target._tag === "Agent"
      ? yield* (yield* Common.agentClient(cfg, [target.address])).call((agent) => agent.Status({ service }))
      : yield* (yield* Common.masterClient(cfg)).call((master) => master.Status({ service }))
    yield* print(o.json ? JSON.stringify(s, null, 2) : formatStatuses([s]))
  })
).pipe(Command.withDescription("show one service"))

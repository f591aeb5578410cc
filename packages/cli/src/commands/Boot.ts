/** `mcp boot status --node N`: each boot stage of a node, its services, check results and timings. */
import { Command, Options } from "@effect/cli"
import { Effect } from "effect"
import { print, table } from "../Output.js"
import * as Common from "./Common.js"

const status = Command.make(
  "status",
  { node: Options.text("node").pipe(Options.withAlias("n")), config: Common.config, direct: Common.direct, json: Common.json },
  (o) =>
    Effect.gen(function* () {
      const boot = yield* (yield* Common.agentFor(o.config, o.node, o.direct)).call((agent) => agent.BootStatus())
      if (o.json) return yield* print(JSON.stringify(boot, null, 2))
      yield* print(table(
        ["STAGE", "STATE", "SERVICES", "ATTEMPTS", "STARTED", "UP", "LAST ERROR"],
        boot.stages.map((s) => [s.name, s.state, s.services.join(",") || "-", String(s.attempts), s.startedAt ?? "-", s.upAt ?? "-", s.lastError ?? "-"])
      ))
      const checks = boot.stages.flatMap((s) => s.checks.map((c) => [s.name, c.service, c.check, c.ok ? "ok" : "FAIL", c.detail]))
      if (checks.length > 0) yield* print("\n" + table(["STAGE", "SERVICE", "CHECK", "RESULT", "DETAIL"], checks))
    })
).pipe(Command.withDescription("show a node's boot stages and their checks"))

export const boot = Command.make("boot").pipe(Command.withSubcommands([status]), Command.withDescription("the staged boot of a node"))

/**
 * `mcp edge list`, `mcp dns check` and `mcp dns list`: the public side of the fleet as the master
 * records it, and the internal zone it answers for.
 * Public DNS is managed by hand at the operator's DNS provider, so `dns check` is the operator's
 * way to see which records are missing or wrong, with the exact record to create; it exits 1
 * when any is, so it can gate a script or a cron job.
 */
import { Command } from "@effect/cli"
import type { InternalZone, Routes } from "@mcp/domain"
import { Effect } from "effect"
import { print, table } from "../Output.js"
import { CommandFailed } from "../Report.js"
import * as Common from "./Common.js"

const DAY_MS = 24 * 60 * 60 * 1000

/** "2026-03-01 (87 days left)", "2025-01-02 (expired 3 days ago)"; an unparsable date as given. */
export const formatExpiry = (notAfter: string, now: Date): string => {
  const at = new Date(notAfter)
  if (Number.isNaN(at.getTime())) return notAfter
  const date = at.toISOString().slice(0, 10)
  const days = Math.floor((at.getTime() - now.getTime()) / DAY_MS)
  if (days < 0) return `${date} (expired ${-days} day${-days === 1 ? "" : "s"} ago)`
  return `${date} (${days} day${days === 1 ? "" : "s"} left)`
}

export const formatEdgeRoutes = (routes: ReadonlyArray<Routes.EdgeRoute>, now: Date): string =>
  routes.length === 0
    ? "no edge routes: no deployed service has a public route"
    : table(
        ["HOSTNAME", "EDGE NODE", "SERVICE", "WORKER", "BACKEND", "CERT SERIAL", "CERT EXPIRES"],
        routes.map((r) => [
          r.hostname,
          r.edgeNode,
          r.service,
          r.workerNode,
          `${r.backendHostname}:${r.backendPort}`,
          r.certSerial === "" ? "-" : r.certSerial,
          r.certNotAfter === "" ? "-" : formatExpiry(r.certNotAfter, now)
        ])
      )

type DnsCheckResult = typeof Routes.DnsCheckResult.Type

/** One block per hostname: `OK` or `WRONG`, what it resolves to, and for wrong ones the problem and the fix. */
export const formatDnsCheck = (results: ReadonlyArray<DnsCheckResult>): string => {
  if (results.length === 0) return "no public hostnames to check: no deployed service has a public route"
  const width = Math.max(...results.map((r) => r.hostname.length))
  return results
    .flatMap((r) => {
      const resolves = r.resolvesTo.length === 0 ? "does not resolve" : `-> ${r.resolvesTo.join(" -> ")}`
      const head = `${r.ok ? "OK   " : "WRONG"}  ${r.hostname.padEnd(width)}  edge ${r.edgeNode}  ${resolves}`
      if (r.ok) return [head]
      return [head, ...(r.problem === undefined ? [] : [`       problem: ${r.problem}`]), ...(r.fix === undefined ? [] : [`       fix:     ${r.fix}`])]
    })
    .join("\n")
}

/** The closing line, and whether the check failed. */
export const summarizeDnsCheck = (results: ReadonlyArray<DnsCheckResult>): { readonly failed: boolean; readonly line: string } => {
  const wrong = results.filter((r) => !r.ok).length
  const total = results.length
  const noun = (n: number) => `${n} public hostname${n === 1 ? "" : "s"}`
  return wrong === 0
    ? { failed: false, line: `${noun(total)} point${total === 1 ? "s" : ""} at ${total === 1 ? "its" : "their"} edge node` }
    : { failed: true, line: `${wrong} of ${noun(total)} ${wrong === 1 ? "does" : "do"} not point at ${total === 1 ? "its" : "their"} edge node; create the records shown after "fix:" at your DNS provider, then run mcp dns check again` }
}

const list = Command.make("list", { config: Common.config, json: Common.json }, (o) =>
  Effect.gen(function* () {
    const routes = yield* (yield* Common.masterClient(yield* Common.loadConfig(o.config))).call((master) => master.EdgeRoutesList())
    yield* print(o.json ? JSON.stringify(routes, null, 2) : formatEdgeRoutes(routes, new Date()))
  })
).pipe(Command.withDescription("list public routes: hostname, edge node, service, worker, backend and certificate"))

export const edge = Command.make("edge").pipe(Command.withSubcommands([list]), Command.withDescription("public routes published through edge nodes"))

const check = Command.make("check", { config: Common.config, json: Common.json }, (o) =>
  Effect.gen(function* () {
    const results = yield* (yield* Common.masterClient(yield* Common.loadConfig(o.config))).call((master) => master.DnsCheck())
    yield* print(o.json ? JSON.stringify(results, null, 2) : formatDnsCheck(results))
    if (results.length === 0) return
    const summary = summarizeDnsCheck(results)
    // With --json the summary goes to stderr only when something is wrong, so stdout stays JSON.
    if (summary.failed) return yield* new CommandFailed({ message: summary.line })
    if (!o.json) yield* print(summary.line)
  })
).pipe(Command.withDescription("check that every public hostname's DNS points at the edge node publishing it; exit 1 and print the records to create if not"))

/** `mcp dns list`: the internal zone's records as the master keeps them, and where it serves them. */
export const formatZone = (view: InternalZone.ZoneView): string =>
  [
    `zone ${view.zone}, serial ${view.serial}, ${view.listen === undefined ? "not served over DNS (no [dns] listen in the master's config)" : `served on ${view.listen} (UDP and TCP)`}`,
    view.records.length === 0
      ? "no records yet: a node's agent registers the names it serves"
      : table(["NAME", "ADDRESS", "NODE", "UPDATED"], view.records.map((r) => [r.name, r.address, r.node, r.updatedAt]))
  ].join("\n")

const zoneList = Command.make("list", { config: Common.config, json: Common.json }, (o) =>
  Effect.gen(function* () {
    const view = yield* (yield* Common.masterClient(yield* Common.loadConfig(o.config))).call((master) => master.ZoneList())
    yield* print(o.json ? JSON.stringify(view, null, 2) : formatZone(view))
  })
).pipe(Command.withDescription("the internal zone's records (name, address, the node that set it) as the master keeps and serves them"))

export const dns = Command.make("dns").pipe(Command.withSubcommands([check, zoneList]), Command.withDescription("DNS: public names of edge routes, and the internal zone"))

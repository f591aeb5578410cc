/**
 * `mcp agent status [--json]`: the master's release, then each node's (version, protocol,
 * architecture, uptime) as its agent answers now, with version skew marked. An agent whose
 * version or protocol differs from the master's, or from this CLI's build, is skew: the command
 * prints the table, then fails with FleetVersionSkew naming the nodes and `mcp agent upgrade
 * <node...>`. A node that does not answer is shown unreachable and is not judged.
 */
import { Command } from "@effect/cli"
import type * as Operations from "@mcp/domain/Operations"
import { Effect } from "effect"
import { print, table } from "../Output.js"
import { FleetVersionSkew, type Release } from "../Report.js"
import * as Common from "./Common.js"
import { type BuildInfo, buildInfo } from "./Version.js"

/** This CLI's build as a reference, or undefined when it does not know its own (run unbuilt). */
export const cliRelease = (info: BuildInfo): Release | undefined =>
  info.version === "unknown" || info.protocol <= 0 ? undefined : { version: info.version, protocol: info.protocol }

export interface NodeVerdict {
  readonly row: Operations.AgentVersion
  readonly status: "ok" | "skew" | "unreachable"
  /** How the node differs, e.g. `version 0.1.0, master 0.2.0`; empty unless skew. */
  readonly differences: ReadonlyArray<string>
}

export interface Verdict {
  readonly master: Operations.MasterVersion
  /** This CLI's build, when known. */
  readonly cli: Release | undefined
  /** How the master differs from this CLI's build; empty when it does not (or the CLI's is unknown). */
  readonly masterDifferences: ReadonlyArray<string>
  readonly nodes: ReadonlyArray<NodeVerdict>
}

const differences = (of: { readonly version: string; readonly protocol?: number | undefined }, references: ReadonlyArray<readonly [string, Release]>) =>
  references.flatMap(([name, ref]) => [
    ...(of.version === ref.version ? [] : [`version ${of.version}, ${name} ${ref.version}`]),
    ...(of.protocol === undefined || of.protocol === ref.protocol ? [] : [`protocol ${of.protocol}, ${name} ${ref.protocol}`])
  ])

/**
 * Judges each node against the master's release and, where the CLI's build is known and differs
 * from the master's, against the CLI's too. An unreachable node is not judged.
 */
export const judge = (status: Operations.FleetVersions, cli: Release | undefined): Verdict => {
  const master: Release = { version: status.master.version, protocol: status.master.protocol }
  const masterDifferences = cli === undefined ? [] : differences(master, [["this CLI", cli]])
  const references: ReadonlyArray<readonly [string, Release]> = [["master", master], ...(masterDifferences.length > 0 && cli !== undefined ? [["this CLI", cli] as const] : [])]
  return {
    master: status.master,
    cli,
    masterDifferences,
    nodes: status.nodes.map((row): NodeVerdict => {
      if (!row.reachable) return { row, status: "unreachable", differences: [] }
      const found = differences(row, references)
      return { row, status: found.length > 0 ? "skew" : "ok", differences: found }
    })
  }
}

/** The skew as the typed error, or undefined when every reachable node runs the reference release. */
export const skewOf = (verdict: Verdict): FleetVersionSkew | undefined => {
  const skewed = verdict.nodes.filter((n) => n.status === "skew")
  if (skewed.length === 0 && verdict.masterDifferences.length === 0) return undefined
  return new FleetVersionSkew({
    nodes: skewed.map((n) => ({ node: n.row.node, version: n.row.version, protocol: n.row.protocol })),
    master: { version: verdict.master.version, protocol: verdict.master.protocol },
    cli: verdict.masterDifferences.length > 0 ? verdict.cli : undefined
  })
}

/** `45s`, `12m 5s`, `3h 4m`, `2d 3h`: the two largest units. */
export const formatUptime = (seconds: number): string => {
  const s = Math.max(0, Math.floor(seconds))
  const d = Math.floor(s / 86_400)
  const h = Math.floor((s % 86_400) / 3600)
  const m = Math.floor((s % 3600) / 60)
  if (d > 0) return `${d}d ${h}h`
  if (h > 0) return `${h}h ${m}m`
  if (m > 0) return `${m}m ${s % 60}s`
  return `${s}s`
}

const statusCell = (n: NodeVerdict) =>
  n.status === "ok" ? "ok" : n.status === "skew" ? `SKEW: ${n.differences.join("; ")}` : `unreachable: ${n.row.unreachable ?? "no answer"}`

/** The header line (the master and this CLI), then one row per node. */
export const formatStatus = (verdict: Verdict): string => {
  const m = verdict.master
  const header = [
    `master ${m.version} (protocol ${m.protocol}), up ${formatUptime(m.uptimeSeconds)}`,
    verdict.cli === undefined ? "this CLI: unknown build" : `this CLI ${verdict.cli.version} (protocol ${verdict.cli.protocol})`
  ].join("; ") + (verdict.masterDifferences.length > 0 ? `  SKEW: ${verdict.masterDifferences.join("; ")}` : "")
  const rows = verdict.nodes.map((n) => [
    n.row.node,
    n.row.role,
    n.row.version,
    n.row.protocol === undefined ? "-" : String(n.row.protocol),
    n.row.arch,
    n.row.uptimeSeconds === undefined ? "-" : formatUptime(n.row.uptimeSeconds),
    statusCell(n)
  ])
  return `${header}\n\n${table(["NODE", "ROLE", "VERSION", "PROTOCOL", "ARCH", "UPTIME", "STATUS"], rows)}`
}

/** --json: the master's answer, this CLI's build, and each node's status and differences. */
export const statusJson = (verdict: Verdict, at: string) =>
  JSON.stringify({
    at,
    master: verdict.master,
    cli: verdict.cli ?? null,
    masterDifferences: verdict.masterDifferences,
    nodes: verdict.nodes.map((n) => ({ ...n.row, status: n.status, differences: n.differences })),
    skewed: verdict.nodes.filter((n) => n.status === "skew").map((n) => n.row.node)
  }, null, 2)

export const status = Command.make("status", { config: Common.config, json: Common.json }, (o) =>
  Effect.gen(function* () {
    const answer = yield* (yield* Common.masterClient(yield* Common.loadConfig(o.config))).call((master) => master.AgentStatus())
    const verdict = judge(answer, cliRelease(buildInfo()))
    yield* print(o.json ? statusJson(verdict, answer.at) : formatStatus(verdict))
    const skew = skewOf(verdict)
    if (skew !== undefined) return yield* skew
  })
).pipe(Command.withDescription("each node's version, protocol, architecture and uptime next to the master's; fails when any differs (version skew)"))

/**
 * `mcp agent upgrade [node...]`, run: every provisioned node by default (a fleet on one version),
 * in a safe order (workers, then edge nodes, then the master's node), one at a time. A node whose
 * new agent does not come up is put back on its previous release and the upgrade stops there:
 * the nodes after it keep their version, and the table says so.
 */
import * as Names from "@mcp/domain/Names"
import { Data, Effect, Option } from "effect"
import * as Arguments from "../Arguments.js"
import { print, table } from "../Output.js"
import * as Common from "../commands/Common.js"
import { UsageError } from "../Report.js"
import * as AgentReady from "./AgentReady.js"
import * as Artifacts from "./Artifacts.js"
import * as FleetFile from "./FleetFile.js"
import * as Layout from "./Layout.js"
import { connectNode, operatorSide } from "./Run.js"
import * as Ssh from "./Ssh.js"
import { AgentDidNotAnswer, type NodeUpgrade, upgradeNode } from "./Upgrade.js"

export interface UpgradeOptions {
  readonly nodes: ReadonlyArray<string>
  readonly artifact: Option.Option<string>
  readonly identity: Option.Option<string>
  readonly timeout: number
  readonly config: Option.Option<string>
  readonly json: boolean
}

/** Some nodes were not upgraded: the table above says which and why. */
export class UpgradeIncomplete extends Data.TaggedError("UpgradeIncomplete")<{ readonly message: string }> {}

const ORDER = { worker: 0, edge: 1, master: 2 } as const

type Row = NodeUpgrade | { readonly node: string; readonly from: string; readonly to: string; readonly result: "failed" | "skipped"; readonly restartMs: 0; readonly detail: string }

const seconds = (ms: number) => (ms === 0 ? "-" : `${(ms / 1000).toFixed(1)} s`)

export const formatUpgrades = (rows: ReadonlyArray<Row>) =>
  table(["NODE", "FROM", "TO", "RESULT", "RESTART"], rows.map((r) => [r.node, r.from || "-", r.to || "-", r.result, seconds(r.restartMs)]))

export const upgradeCommand = (o: UpgradeOptions) =>
  Effect.gen(function* () {
    if (o.timeout < 1) return yield* new UsageError({ message: `--timeout: give a number of seconds, at least 1` })
    const named = yield* Effect.forEach(o.nodes, Arguments.decode(Names.NodeName, "[node]"))
    const { cfg, settings, identity } = yield* operatorSide(o.config, o.identity)
    const fleet = yield* FleetFile.readFleet(settings.fleet_file)
    const records: Readonly<Record<string, FleetFile.NodeRecord>> = fleet.nodes
    const known = Object.keys(records)
    const unknown = named.filter((n) => !(n in records))
    if (unknown.length > 0) {
      return yield* new UsageError({
        message: `not provisioned from here: ${unknown.join(", ")} (${settings.fleet_file} knows ${known.length === 0 ? "no node" : known.join(", ")}); provision it first with mcp node provision <name> --ssh user@host`
      })
    }
    const chosen = (named.length > 0 ? named : known)
      .map((node) => ({ node, record: records[node]! }))
      .sort((a, b) => ORDER[a.record.role] - ORDER[b.record.role] || a.node.localeCompare(b.node))
    if (chosen.length === 0) return yield* new UsageError({ message: `no node to upgrade: ${settings.fleet_file} records none; provision one with mcp node provision` })

    const out = (line: string) => (o.json ? Effect.void : print(line))
    const rows: Array<Row> = []
    // Every node by default: one the master knows but this machine never provisioned cannot be
    // reached here, and is listed (a fleet left on two versions is what this command avoids).
    if (named.length === 0) {
      const listed = yield* Effect.either(Effect.scoped(Effect.flatMap(Common.masterClient(cfg), (m) => m.call((master) => master.NodesList()))))
      if (listed._tag === "Left") yield* out(`(the master did not list its nodes: ${listed.left.message}; upgrading the nodes provisioned from here)`)
      else {
        for (const view of listed.right.filter((v) => !(v.info.name in records))) {
          const detail = `not provisioned from here (${settings.fleet_file} has no SSH target for it): upgrade it by hand (docs/INSTALL.md, step 10)`
          rows.push({ node: view.info.name, from: "", to: "", result: "skipped", restartMs: 0, detail })
          yield* out(`${view.info.name}: skipped: ${detail}`)
        }
      }
    }
    let stopped: string | undefined
    for (const { node, record } of chosen) {
      if (stopped !== undefined) {
        rows.push({ node, from: "", to: "", result: "skipped", restartMs: 0, detail: `not tried: ${stopped} was not upgraded` })
        continue
      }
      yield* out(`${node} (${record.role}, ${record.ssh}):`)
      const address = Layout.hostPort(record.address, record.port)
      const row = yield* Effect.scoped(Effect.gen(function* () {
        const target = yield* Ssh.parseTarget(record.ssh)
        const session = yield* connectNode(target, settings, identity, Option.none())
        return yield* upgradeNode(session, node, (arch) => Artifacts.artifactFor(o.artifact, settings.releases_dir, arch), {
          onUpload: (what, bytes) => out(`  uploading ${what} (${(bytes / 1024 / 1024).toFixed(1)} MiB)`),
          agentStart: () => AgentReady.agentStart(cfg, address),
          awaitAgent: (version, before) =>
            Effect.map(
              Effect.mapError(
                AgentReady.awaitAgent(cfg, { node, address, version, notStartedAt: before, waitSeconds: o.timeout }),
                (e) => new AgentDidNotAnswer({ reason: e.reason })
              ),
              (ready) => ready.startedAt ?? ""
            )
        })
      })).pipe(
        Effect.catchAll((e): Effect.Effect<Row> => Effect.succeed({ node, from: "", to: "", result: "failed", restartMs: 0, detail: e.message }))
      )
      rows.push(row)
      yield* out(`  ${row.result}: ${row.detail.split("\n").join("\n    ")}`)
      if (row.result === "failed" || row.result === "rolled back") stopped = node
    }
    yield* o.json ? print(JSON.stringify(rows, null, 2)) : print(formatUpgrades(rows))
    const bad = rows.filter((r) => r.result !== "upgraded" && r.result !== "already current")
    if (bad.length > 0) {
      return yield* new UpgradeIncomplete({
        message: `not upgraded: ${bad.map((r) => `${r.node} (${r.result})`).join(", ")}; fix what the lines above say, then run mcp agent upgrade again (upgraded nodes are left as they are)`
      })
    }
  })

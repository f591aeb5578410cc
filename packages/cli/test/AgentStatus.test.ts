/**
 * `mcp agent status`: which nodes count as version skew (against the master, and against this
 * CLI's build when it differs from the master's), how an unreachable node shows, the table, the
 * --json shape and the FleetVersionSkew error naming the nodes and `mcp agent upgrade`.
 */
import { describe, expect, it } from "@effect/vitest"
import type { Operations } from "@mcp/domain"
import { Effect, Exit } from "effect"
import { cliRelease, formatStatus, formatUptime, judge, skewOf, statusJson } from "../src/commands/AgentStatus.js"
import * as Report from "../src/Report.js"

const master: Operations.MasterVersion = { version: "0.2.0", protocol: 3, startedAt: "2026-01-10T10:00:00.000Z", uptimeSeconds: 7260 }

const node = (name: string, over: Partial<Operations.AgentVersion> = {}): Operations.AgentVersion => ({
  node: name as Operations.AgentVersion["node"],
  role: "worker",
  reachable: true,
  version: "0.2.0",
  arch: "x64",
  protocol: 3,
  startedAt: "2026-01-10T11:00:00.000Z",
  uptimeSeconds: 3725,
  ...over
})

/** A node without the fields its agent did not report. */
const without = (row: Operations.AgentVersion, ...keys: ReadonlyArray<"protocol" | "startedAt" | "uptimeSeconds">): Operations.AgentVersion => {
  const copy: Record<string, unknown> = { ...row }
  for (const key of keys) delete copy[key]
  return copy as Operations.AgentVersion
}

const unreachable = (name: string, reason: string, version = "0.2.0") =>
  without(node(name, { reachable: false, version, unreachable: reason }), "protocol", "startedAt", "uptimeSeconds")

const fleet = (nodes: ReadonlyArray<Operations.AgentVersion>): Operations.FleetVersions => ({ at: "2026-01-10T12:01:00.000Z", master, nodes })

const same = { version: "0.2.0", protocol: 3 }

describe("mcp agent status: the skew judgement", () => {
  it("every node on the master's release, the CLI's too: no skew", () => {
    const verdict = judge(fleet([node("w1"), node("e1", { role: "edge", arch: "arm64" })]), same)
    expect(verdict.nodes.map((n) => n.status)).toEqual(["ok", "ok"])
    expect(verdict.masterDifferences).toEqual([])
    expect(skewOf(verdict)).toBeUndefined()
  })

  it("a node on another version or protocol than the master's is skew, naming each difference", () => {
    const verdict = judge(fleet([node("w1"), node("w2", { version: "0.1.0", protocol: 2 }), node("w3", { protocol: 2 })]), same)
    expect(verdict.nodes.map((n) => [n.row.node, n.status, n.differences])).toEqual([
      ["w1", "ok", []],
      ["w2", "skew", ["version 0.1.0, master 0.2.0", "protocol 2, master 3"]],
      ["w3", "skew", ["protocol 2, master 3"]]
    ])
    const skew = skewOf(verdict)
    expect(skew).toBeInstanceOf(Report.FleetVersionSkew)
    expect(skew?.message).toBe(
      "version skew: w2 runs 0.1.0 (protocol 2), w3 runs 0.2.0 (protocol 2); the master runs 0.2.0 (protocol 3); upgrade them with: mcp agent upgrade w2 w3"
    )
  })

  it("an unreachable node is shown as such and not judged, whatever it last registered with", () => {
    const verdict = judge(fleet([unreachable("w1", "no answer within 5000 ms", "0.0.1")]), same)
    expect(verdict.nodes[0]!.status).toBe("unreachable")
    expect(skewOf(verdict)).toBeUndefined()
  })

  it("a CLI build other than the master's: the master is marked, and nodes are judged against both", () => {
    const cli = { version: "0.3.0", protocol: 4 }
    const verdict = judge(fleet([node("w1")]), cli)
    expect(verdict.masterDifferences).toEqual(["version 0.2.0, this CLI 0.3.0", "protocol 3, this CLI 4"])
    expect(verdict.nodes[0]!.differences).toEqual(["version 0.2.0, this CLI 0.3.0", "protocol 3, this CLI 4"])
    expect(skewOf(verdict)?.message).toBe(
      "version skew: w1 runs 0.2.0 (protocol 3); the master runs 0.2.0 (protocol 3), this CLI 0.3.0 (protocol 4); upgrade it with: mcp agent upgrade w1"
    )
  })

  it("only the master differs from the CLI (no nodes): the error says so without an upgrade command for nodes", () => {
    const skew = skewOf(judge(fleet([]), { version: "0.3.0", protocol: 3 }))
    expect(skew?.message).toBe("version skew: the master runs 0.2.0 (protocol 3), this CLI 0.3.0 (protocol 3); upgrade the older of the two to the same MCP release")
  })

  it("a CLI that does not know its own build (run unbuilt, without build info) compares with the master only", () => {
    expect(cliRelease({ version: "unknown", commit: "unknown", protocol: 0 })).toBeUndefined()
    expect(cliRelease({ version: "0.2.0", commit: "abc", protocol: 3 })).toEqual(same)
    const verdict = judge(fleet([node("w1")]), undefined)
    expect(verdict.nodes[0]!.status).toBe("ok")
    expect(skewOf(verdict)).toBeUndefined()
  })

  it("the error is reported like every other failure: its message, exit code 1", () => {
    const skew = skewOf(judge(fleet([node("w2", { version: "0.1.0" })]), same))!
    expect(Report.describe(skew)).toEqual({ message: skew.message, exitCode: Report.EXIT_FAILURE })
    const exit = Effect.runSyncExit(Effect.fail(skew))
    expect(Exit.isFailure(exit)).toBe(true)
  })
})

describe("mcp agent status: the output", () => {
  it("uptime in its two largest units", () => {
    expect([0, 45, 725, 3725, 93_600, 200_000].map(formatUptime)).toEqual(["0s", "45s", "12m 5s", "1h 2m", "1d 2h", "2d 7h"])
  })

  it("a header line with the master and the CLI, then one row per node with skew and unreachable marked", () => {
    const verdict = judge(fleet([
      node("w1"),
      node("w2", { version: "0.1.0", protocol: 2, arch: "arm64", uptimeSeconds: 45 }),
      unreachable("w3", "connection refused"),
      without(node("w4"), "startedAt", "uptimeSeconds")
    ]), same)
    expect(formatStatus(verdict)).toBe([
      "master 0.2.0 (protocol 3), up 2h 1m; this CLI 0.2.0 (protocol 3)",
      "",
      "NODE  ROLE    VERSION  PROTOCOL  ARCH   UPTIME  STATUS",
      "w1    worker  0.2.0    3         x64    1h 2m   ok",
      "w2    worker  0.1.0    2         arm64  45s     SKEW: version 0.1.0, master 0.2.0; protocol 2, master 3",
      "w3    worker  0.2.0    -         x64    -       unreachable: connection refused",
      "w4    worker  0.2.0    3         x64    -       ok"
    ].join("\n"))
  })

  it("the header marks a master that differs from the CLI", () => {
    const text = formatStatus(judge(fleet([]), { version: "0.3.0", protocol: 3 }))
    expect(text.split("\n")[0]).toBe("master 0.2.0 (protocol 3), up 2h 1m; this CLI 0.3.0 (protocol 3)  SKEW: version 0.2.0, this CLI 0.3.0")
  })

  it("--json: the master, the CLI, every node with its status and differences, and the skewed nodes", () => {
    const verdict = judge(fleet([node("w1"), node("w2", { version: "0.1.0" })]), same)
    const json = JSON.parse(statusJson(verdict, "2026-01-10T12:01:00.000Z"))
    expect(json).toEqual({
      at: "2026-01-10T12:01:00.000Z",
      master,
      cli: same,
      masterDifferences: [],
      nodes: [
        { ...node("w1"), status: "ok", differences: [] },
        { ...node("w2", { version: "0.1.0" }), status: "skew", differences: ["version 0.1.0, master 0.2.0"] }
      ],
      skewed: ["w2"]
    })
  })
})

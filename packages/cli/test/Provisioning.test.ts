// The operator-side parts of provisioning and upgrades that need no node: the release archive's
// checks, the record of provisioned nodes, shell quoting, the agent config written to nodes, and
// the upgrade table. (On real nodes: test/Provision.test.ts.)
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as TOML from "smol-toml"
import * as Artifacts from "../src/provision/Artifacts.js"
import * as FleetFile from "../src/provision/FleetFile.js"
import * as Layout from "../src/provision/Layout.js"
import { quote } from "../src/provision/RootShell.js"
import { versionOf } from "../src/provision/Upgrade.js"
import { formatUpgrades } from "../src/provision/UpgradeRun.js"

const dir = () => mkdtempSync(join(tmpdir(), "mcp-provisioning-"))

const archive = (d: string, name: string, content: string, sum?: string) => {
  const path = join(d, name)
  writeFileSync(path, content)
  writeFileSync(`${path}.sha256`, `${sum ?? createHash("sha256").update(content).digest("hex")}  ${name}\n`)
  return path
}

describe("release archives", () => {
  it.effect("an archive matching its checksum gives its release name, version and architecture", () =>
    Effect.gen(function* () {
      const path = archive(dir(), "mcp-1.2.3-rc.1-linux-arm64.tar.gz", "not really gzip")
      const a = yield* Artifacts.readArtifact(path)
      expect(a).toMatchObject({ release: "mcp-1.2.3-rc.1-linux-arm64", version: "1.2.3-rc.1", arch: "arm64", bytes: 15 })
      expect(a.sha256).toBe(createHash("sha256").update("not really gzip").digest("hex"))
    }))

  it.effect("a corrupt archive, a missing checksum or another file name is refused before anything is sent", () =>
    Effect.gen(function* () {
      const d = dir()
      const corrupt = archive(d, "mcp-1.0.0-linux-x64.tar.gz", "changed after the build", "0".repeat(64))
      expect((yield* Effect.flip(Artifacts.readArtifact(corrupt))).message).toMatch(/does not match .*\.sha256 .*copy the release again/)
      writeFileSync(join(d, "mcp-2.0.0-linux-x64.tar.gz"), "x")
      expect((yield* Effect.flip(Artifacts.readArtifact(join(d, "mcp-2.0.0-linux-x64.tar.gz")))).message).toMatch(/cannot read .*\.sha256/)
      const other = archive(d, "backup.tar.gz", "x")
      expect((yield* Effect.flip(Artifacts.readArtifact(other))).message).toMatch(/is not a release archive/)
    }))

  it.effect("without --artifact, the one of the CLI's version for the node's architecture is looked up, and a missing one says how to make it", () =>
    Effect.gen(function* () {
      const e = yield* Effect.flip(Artifacts.artifactFor(Option.none(), "/nonexistent/releases", "arm64"))
      expect(e.message).toMatch(/\/nonexistent\/releases\/mcp-.*-linux-arm64\.tar\.gz/)
      expect(e.message).toContain("npm run release on a arm64 machine")
    }))

  it("a release's version is read from its name", () => {
    expect(versionOf("mcp-0.1.0-linux-x64")).toBe("0.1.0")
    expect(versionOf("mcp-0.2.0-rc.1-linux-arm64")).toBe("0.2.0-rc.1")
    expect(versionOf("something-else")).toBeUndefined()
  })
})

describe("the record of provisioned nodes", () => {
  it.effect("is empty before the first node, and keeps the UID and each node's SSH target", () =>
    Effect.gen(function* () {
      const file = join(dir(), "admin", "fleet.toml")
      expect(yield* FleetFile.readFleet(file)).toEqual({ nodes: {} })
      yield* FleetFile.updateFleet(file, (f) => ({ ...f, mcp_uid: 999 }))
      yield* FleetFile.updateFleet(file, (f) => ({ ...f, nodes: { ...f.nodes, rift: { ssh: "root@10.0.0.5", address: "10.0.0.5", port: 9444, role: "worker" } } }))
      expect(yield* FleetFile.readFleet(file)).toEqual({ mcp_uid: 999, nodes: { rift: { ssh: "root@10.0.0.5", address: "10.0.0.5", port: 9444, role: "worker" } } })
      expect(readFileSync(file, "utf8")).toMatch(/^# Written by mcp node provision/)
    }))

  it.effect("a damaged record is refused naming the field", () =>
    Effect.gen(function* () {
      const file = join(dir(), "fleet.toml")
      writeFileSync(file, `mcp_uid = "nine"\n[nodes.rift]\nssh = "root@h"\naddress = "10.0.0.5"\nport = 70000\nrole = "worker"\ncolour = "red"\n`)
      const message = (yield* Effect.flip(FleetFile.readFleet(file))).message
      expect(message).toContain("mcp_uid")
      expect(message).toContain("nodes.rift.port")
      expect(message).toMatch(/nodes\.rift\.colour: unknown setting/)
    }))
})

describe("what provisioning writes", () => {
  it("a shell word keeps any text as it is, quotes included", () => {
    for (const word of ["plain", "with space", "it's", "'; rm -rf / #", "$(id) `id` \\ \" \n newline"]) {
      expect(execFileSync("sh", ["-c", `printf %s ${quote(word)}`], { encoding: "utf8" })).toBe(word)
    }
  })

  it("the agent config names the node's files under /etc/mcp and the master's addresses", () => {
    const text = Layout.agentConfig({ node: "rift", role: "edge", address: "fd00::5", port: 9444, masters: ["10.0.0.1:9555", "[fd00::1]:9555"], internalZone: "svc.example.net" })
    expect(TOML.parse(text)).toEqual({
      node: "rift",
      role: "edge",
      listen: "[fd00::5]:9444",
      node_address: "fd00::5",
      data_dir: "/var/lib/mcp-agent",
      internal_zone: "svc.example.net",
      tls: { cert: "/etc/mcp/rift.crt", key: "/etc/mcp/rift.key", ca: "/etc/mcp/ca.crt" },
      auth: { token_file: "/etc/mcp/agent-tokens.toml" },
      runtime: { socket: "/run/podman/podman.sock" },
      proxy: {
        kind: "haproxy",
        dir: "/var/lib/mcp-agent/haproxy",
        master_socket: "/var/lib/mcp-agent/haproxy/master.sock",
        stats_socket: "/var/lib/mcp-agent/haproxy/stats.sock",
        bind: "fd00::5"
      },
      master: { addresses: ["10.0.0.1:9555", "[fd00::1]:9555"], token_file: "/etc/mcp/rift.token" }
    })
  })

  it("the upgrade table shows each node's result and its restart time", () => {
    const text = formatUpgrades([
      { node: "w1", from: "mcp-0.1.0-linux-x64", to: "mcp-0.2.0-linux-x64", result: "upgraded", restartMs: 1520, detail: "" },
      { node: "e1", from: "", to: "", result: "skipped", restartMs: 0, detail: "" }
    ])
    expect(text.split("\n").map((l) => l.trim().split(/\s+/))).toEqual([
      ["NODE", "FROM", "TO", "RESULT", "RESTART"],
      ["w1", "mcp-0.1.0-linux-x64", "mcp-0.2.0-linux-x64", "upgraded", "1.5", "s"],
      ["e1", "-", "-", "skipped", "-"]
    ])
  })
})

/**
 * The release artifact (npm run release): the archive matches its checksum and its manifest file
 * by file, and it runs on a Debian node that has no Node, npm or compiler (a debootstrap rootfs in
 * Podman): each program answers --version, and an agent started from it registers with a master
 * on this host and deploys a service that answers.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import * as LocalFleet from "./support/LocalFleet.js"
import { NODE_IMAGE, podman, podmanEnv, requireNodeImage } from "./support/DebianNode.js"
import { startManagedProcess, type ManagedProcess } from "./support/ManagedProcess.js"
import { BUSYBOX_IMAGE, type PodmanService, startPodmanService } from "./support/Podman.js"
import { buildRelease, type Release } from "./support/Release.js"
import { unitEnvironment } from "./support/Units.js"

const repo = fileURLToPath(new URL("..", import.meta.url))
/** Where the node has the release, as docs/INSTALL.md puts it. */
const INSTALLED = "/opt/mcp/current"

const work = mkdtempSync(join(tmpdir(), "mcp-release-it-"))
let release: Release
let releaseDir = ""
const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex")

beforeAll(() => {
  requireNodeImage("a Debian rootfs without Node, for the release tests")
  release = buildRelease(join(work, "release"))
  releaseDir = join(release.unpacked, release.name)
}, 300_000)

describe("the release archive", () => {
  it("matches its checksum file, which sha256sum -c accepts", () => {
    const [digest, file] = readFileSync(release.checksumFile, "utf8").trim().split(/\s+/)
    expect(file).toBe(`${release.name}.tar.gz`)
    expect(digest).toBe(sha256(release.archive))
    const check = spawnSync("sha256sum", ["-c", release.checksumFile], { cwd: dirname(release.archive), encoding: "utf8" })
    expect(check.stdout.trim(), check.stderr).toBe(`${release.name}.tar.gz: OK`)
  })

  it("names the build it holds and this machine's architecture", () => {
    const build = JSON.parse(readFileSync(join(repo, "dist", "BUILD"), "utf8")) as { version: string; commit: string; protocol: number }
    const { files: _, ...head } = release.manifest
    expect(head).toEqual({
      name: "mcp",
      version: build.version,
      commit: build.commit,
      protocol: build.protocol,
      platform: "linux",
      arch: process.arch,
      node: process.versions.node,
      programs: ["mcp", "mcp-agent", "mcp-master"]
    })
    expect(readFileSync(join(releaseDir, "MANIFEST.json"), "utf8")).toBe(readFileSync(release.manifestFile, "utf8"))
  })

  it("holds exactly the files its manifest lists, each with its size, mode and checksum", () => {
    const found: Array<string> = []
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir)) {
        const path = join(dir, entry)
        if (lstatSync(path).isDirectory()) walk(path)
        else found.push(relative(releaseDir, path))
      }
    }
    walk(releaseDir)
    const listed = release.manifest.files.map((f) => f.path)
    expect(found.filter((f) => f !== "MANIFEST.json").sort()).toEqual([...listed].sort())
    for (const f of release.manifest.files) {
      const path = join(releaseDir, f.path)
      if (f.link !== undefined) {
        expect(readlinkSync(path), f.path).toBe(f.link)
        continue
      }
      const stat = lstatSync(path)
      expect({ path: f.path, size: stat.size, mode: (stat.mode & 0o777).toString(8).padStart(4, "0"), sha256: sha256(path) }).toEqual({ path: f.path, size: f.size, mode: f.mode, sha256: f.sha256 })
    }
    // The programs, the SQLite module compiled for the Node inside, and the units.
    expect(listed).toEqual(expect.arrayContaining(["mcp", "mcp-agent", "mcp-master", "lib/mcp.mjs", "lib/mcp-agent.mjs", "lib/mcp-master.mjs", "lib/node", "lib/node_modules/better-sqlite3/build/Release/better_sqlite3.node", "systemd/mcp-agent.service", "systemd/mcp-master.service"]))
    expect(release.manifest.files.find((f) => f.path === "mcp-agent")?.link).toBe("mcp")
    expect(release.manifest.files.find((f) => f.path === "mcp")?.mode).toBe("0755")
    expect(release.manifest.files.find((f) => f.path === "lib/node")?.sha256, "the Node inside is this one, unmodified").toBe(sha256(process.execPath))
    // Build leftovers (C sources, object files) stay out.
    expect(listed.filter((f) => /\.(c|cc|h|o|a|gyp|mk)$|Makefile$|\/src\//.test(f))).toEqual([])
  })
})

describe("the release on a Debian node without Node", () => {
  /** Runs a shell script in a fresh container of the node image with the release at /opt/mcp/current. */
  const onNode = (script: string) =>
    podman(["run", "--rm", "--network", "none", "-v", `${releaseDir}:${INSTALLED}:ro`, NODE_IMAGE, "bash", "-c", script])

  it("has no Node installed there, and each program answers --version with the build", () => {
    const r = onNode(`command -v node nodejs npm cc gcc || echo none; for p in mcp mcp-agent mcp-master; do ${INSTALLED}/$p --version; done`)
    expect(r.status, r.output).toBe(0)
    const { version, commit, protocol } = release.manifest
    expect(r.stdout.trim().split("\n")).toEqual([
      "none",
      ...release.manifest.programs.map((p) => `${p} ${version} (commit ${commit}, protocol ${protocol})`)
    ])
  })

  it("gives Node the flags of MCP_NODE_FLAGS, which NODE_OPTIONS refuses (V8's young generation's floor, for one)", () => {
    // Two flags, one word each, as a drop-in gives them.
    const flags = "--min-semi-space-size=8 --stack-trace-limit=20"
    const asUnit = onNode(`MCP_NODE_FLAGS="${flags}" ${INSTALLED}/mcp-master --version`)
    expect(asUnit.status, asUnit.output).toBe(0)
    expect(asUnit.stdout).toMatch(/^mcp-master /)
    // Node's, not the program's: a flag Node does not know stops it before the program starts.
    const unknown = onNode(`MCP_NODE_FLAGS="--no-such-node-flag" ${INSTALLED}/mcp-master --version`)
    expect(unknown.status).not.toBe(0)
    expect(unknown.output).toMatch(/bad option: --no-such-node-flag/)
    // The same flag through NODE_OPTIONS is refused, which is why the launcher has its own variable.
    const viaOptions = onNode(`NODE_OPTIONS="--min-semi-space-size=8" ${INSTALLED}/mcp-master --version`)
    expect(viaOptions.output).toMatch(/is not allowed in NODE_OPTIONS/)
  })

  it("says which names it answers to when started under another one", () => {
    const r = onNode(`ln -s ${INSTALLED}/mcp /usr/local/bin/other && other --version`)
    expect(r.status).toBe(2)
    expect(r.output).toMatch(/started as "other"; run this launcher as one of mcp, mcp-agent, mcp-master/)
  })

  describe("an agent from the release, a master on this host", () => {
    let engine: PodmanService
    let fleet: LocalFleet.Fleet
    let master: LocalFleet.Daemon
    let agent: ManagedProcess | undefined
    const container = `mcp-release-agent-${process.pid}-${Date.now().toString(36)}`
    const NODE = "rel1"

    beforeAll(async () => {
      engine = await startPodmanService()
      const masterPort = await LocalFleet.freePort()
      const masters = [`127.0.0.1:${masterPort}`]
      fleet = await LocalFleet.prepare(join(work, "fleet"), { masters })
      master = await LocalFleet.spawnDaemon(LocalFleet.bins.master, LocalFleet.writeMasterConfig(fleet, { port: masterPort, interval: "1s" }))
      const agentPort = await LocalFleet.freePort()
      const config = LocalFleet.writeAgentConfig(fleet, { node: NODE, port: agentPort, socket: engine.socketPath, masters })
      await LocalFleet.enrolNode(fleet, NODE) // its certificate and token (begun by writeAgentConfig)
      // The node: the host's network (the master listens on its loopback), the engine's socket
      // and the fleet's files (config, certificates, token, data dir) at the same paths as here.
      agent = await startManagedProcess({
        name: "mcp-agent (release, in the Debian node)",
        command: "podman",
        args: [
          "run", "--rm", "--name", container, "--network", "host",
          "-v", `${releaseDir}:${INSTALLED}:ro`,
          "-v", `${dirname(engine.socketPath)}:${dirname(engine.socketPath)}`,
          "-v", `${fleet.dir}:${fleet.dir}`,
          // What its systemd unit gives it (NODE_OPTIONS, the malloc setting): the agent as installed.
          ...Object.entries(unitEnvironment("mcp-agent")).flatMap(([key, value]) => ["-e", `${key}=${value}`]),
          NODE_IMAGE, `${INSTALLED}/mcp-agent`, "--config", config
        ],
        env: podmanEnv(),
        ready: { awaiting: "the agent to say it listens", output: /listening on/ },
        timeoutMs: 60_000,
        tailChars: Infinity
      })
    }, 180_000)

    afterAll(async () => {
      podman(["rm", "-f", "-t", "0", container])
      await agent?.stop()
      await master?.stop()
      const leftovers = podman(["ps", "-a", "-q", "--filter", "label=mcp.service=relhello"]).stdout.trim().split("\n").filter((l) => l !== "")
      if (leftovers.length > 0) podman(["rm", "-f", ...leftovers])
      await engine?.stop()
    })

    it("registers with the master and deploys a service that answers", async () => {
      let health = ""
      let listing = ""
      for (const until = Date.now() + 60_000; Date.now() < until && health !== "healthy";) {
        const r = await LocalFleet.mcp(fleet, ["node", "list", "--json"])
        listing = `${r.stdout}${r.stderr}`
        if (r.code === 0) health = (JSON.parse(r.stdout) as Array<{ info: { name: string }; health: string }>).find((n) => n.info.name === NODE)?.health ?? "not registered"
        if (health !== "healthy") await new Promise((resolve) => setTimeout(resolve, 500))
      }
      expect(health, `mcp node list: ${listing}\n--- the agent's log:\n${agent?.output()}`).toBe("healthy")

      const port = await LocalFleet.freePort()
      const definition = join(work, "relhello.toml")
      writeFileSync(definition, `name = "relhello"
[[components]]
name = "web"
image = "${BUSYBOX_IMAGE}"
cmd = ["sh", "-c", "mkdir -p /www && echo served-by-the-release > /www/index.html && exec httpd -f -p 8080 -h /www"]
ports = ["127.0.0.1:${port}:8080"]
`)
      const deployed = await LocalFleet.mcp(fleet, ["deploy", "relhello", "--file", definition])
      expect(deployed.code, `${deployed.stdout}${deployed.stderr}\n--- agent:\n${agent?.output()}`).toBe(0)
      let body = ""
      for (const until = Date.now() + 20_000; Date.now() < until && body !== "served-by-the-release";) {
        body = await fetch(`http://127.0.0.1:${port}/`).then(async (r) => (await r.text()).trim(), (e: Error) => `unreachable: ${e.message}`)
        if (body !== "served-by-the-release") await new Promise((resolve) => setTimeout(resolve, 250))
      }
      expect(body).toBe("served-by-the-release")
      const ps = await LocalFleet.mcp(fleet, ["ps", "--json"])
      expect(ps.code, ps.stderr).toBe(0)
      expect(ps.stdout).toMatch(new RegExp(`"${NODE}"`))
      const undeployed = await LocalFleet.mcp(fleet, ["undeploy", "relhello"])
      expect(undeployed.code, undeployed.stderr).toBe(0)

      // The daemons log each line once, in logfmt: runMain's pretty logger used to print every
      // line a second time, in local time.
      expect(master.output.match(/listening on https:/g), master.output).toHaveLength(1)
      expect(master.output).toMatch(/^timestamp=\S+ level=INFO .*listening on https:/m)
      expect(master.output).not.toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] /m)
    }, 120_000)
  })
})

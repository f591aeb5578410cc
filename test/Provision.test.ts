// `mcp node provision` on real Debian nodes: Podman containers with systemd as PID 1 and their
// own sshd, reached over SSH like any server. They share this host's network (their sshd and
// agent listen on loopback addresses of their own, 127.0.0.2 and 127.0.0.3), the master runs on
// this host, and their agents run containers on this host's Podman through its API socket,
// mounted where podman.socket puts it on a real node (/run/podman): the worker runs its
// containers on the host engine, not a nested one. The release they get is the one
// `npm run release` makes from this checkout.
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs"
import { request as httpsRequest } from "node:https"
import { type AddressInfo, connect, createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { podman as podmanOf, requireNodeImage, type SystemdNode, sshdOnLoopback, startSystemdNode } from "./support/DebianNode.js"
import * as LocalFleet from "./support/LocalFleet.js"
import { BUSYBOX_IMAGE, type PodmanService, startPodmanService } from "./support/Podman.js"
import { buildRelease, buildReleaseOfVersion, relabelRelease, type Release } from "./support/Release.js"
import { makeKey } from "./support/Sshd.js"

const work = mkdtempSync(join(tmpdir(), "mcp-provision-"))
const clientKey = join(work, "operator_ed25519")
const knownHosts = join(work, "known_hosts")
const SERVICE = "provhello"

interface TestNode {
  readonly name: string
  readonly address: string
  readonly sshPort: number
  readonly agentPort: number
  readonly node: SystemdNode
  /** Its sshd's host key fingerprint, as its console shows it. */
  readonly fingerprint: string
}

let engine: PodmanService | undefined
let fleet: LocalFleet.Fleet
let master: LocalFleet.Daemon | undefined
let release: Release
const nodes: Array<TestNode> = []
/** The listener the service deployed on the worker has on the worker's proxy. */
let servicePort = 0
/** The worker's local CA, which signs its route certificates. */
let routeCa = ""

/**
 * GET / of the deployed service through the worker's proxy, by its name (SNI and Host), the
 * certificate checked against the worker's CA: the body, or what went wrong.
 */
const throughProxy = (worker: TestNode): Promise<string> =>
  new Promise((resolve) => {
    const name = `${SERVICE}.svc.mcp.internal`
    // A new connection each time (agent: false): a kept-alive socket the proxy closed after the
    // last answer would fail the next request on the client's side, whatever the proxy does.
    const req = httpsRequest({ host: worker.address, port: servicePort, servername: name, headers: { host: name }, ca: routeCa, path: "/", timeout: 2_000, agent: false }, (res) => {
      let body = ""
      res.on("data", (d: Buffer) => (body += d.toString()))
      res.on("end", () => resolve(body.trim()))
      res.on("error", (e) => resolve(`error: ${e.message}`))
    })
    req.on("timeout", () => req.destroy(new Error("timed out")))
    req.on("error", (e) => resolve(`error: ${e.message}`))
    req.end()
  })

/**
 * `engine`: the host's Podman API socket mounted where podman.socket puts it (the worker runs its
 * containers on the host's engine); without it the node has no engine, and provisioning installs
 * Podman there (the edge node, which runs no service containers).
 */
const startNode = async (name: string, address: string, engineSocket: boolean): Promise<TestNode> => {
  const sshPort = await LocalFleet.freePort()
  const agentPort = await LocalFleet.freePort()
  const dir = join(work, name)
  mkdirSync(dir)
  const node = startSystemdNode(`mcp-${name}-${process.pid}-${Date.now().toString(36)}`, {
    hostNetwork: true,
    volumes: [...sshdOnLoopback(dir, sshPort, readFileSync(`${clientKey}.pub`, "utf8")), ...(engineSocket ? [[join(engine!.socketPath, ".."), "/run/podman"] as const] : [])]
  })
  nodes.push({ name, address, sshPort, agentPort, node, fingerprint: "" })
  node.run("for i in $(seq 50); do systemctl is-active --quiet ssh && break; sleep 0.2; done; systemctl is-active ssh")
  const fingerprint = node.run("ssh-keygen -l -E sha256 -f /etc/ssh/ssh_host_ed25519_key.pub").split(" ")[1]!
  const started = { name, address, sshPort, agentPort, node, fingerprint }
  nodes[nodes.length - 1] = started
  return started
}

const provision = (n: TestNode, ...args: Array<string>) =>
  LocalFleet.mcp(fleet, ["node", "provision", n.name, "--ssh", `root@127.0.0.1:${n.sshPort}`, "--address", n.address, "--port", String(n.agentPort), ...args])

const explain = (r: { code: number; stdout: string; stderr: string }, n: TestNode) =>
  `exit ${r.code}\n${r.stdout}${r.stderr}\n--- the agent's journal on ${n.name}:\n${n.node.journal("mcp-agent")}\n--- the master:\n${master?.output.split("\n").slice(-30).join("\n")}`

/** What provisioning may have written on a node: the paths it owns, with owner, mode and content digest. */
const footprint = (n: TestNode) =>
  n.node.run(`
    for p in /opt/mcp /etc/mcp /usr/local/bin/mcp /etc/systemd/system/mcp-agent.service /etc/systemd/system/mcp-proxy.service; do
      [ -e "$p" ] || [ -L "$p" ] || { echo "$p absent"; continue; }
      find "$p" -xdev \\( -type f -o -type l -o -type d \\) -printf '%p %u:%g %m %l\\n' | sort
    done
    getent passwd mcp || echo "no mcp user"
    sha256sum /etc/mcp/* 2>/dev/null || true
  `)

beforeAll(async () => {
  requireNodeImage("the provisioning tests on Debian nodes")
  makeKey(clientKey)
  engine = await startPodmanService()
  const masterPort = await LocalFleet.freePort()
  fleet = await LocalFleet.prepare(join(work, "operator"), { masters: [`127.0.0.1:${masterPort}`] })
  master = await LocalFleet.spawnDaemon(LocalFleet.bins.master, LocalFleet.writeMasterConfig(fleet, { port: masterPort, interval: "1s" }))
  release = buildRelease(join(work, "release"))
  // The operator's provisioning settings: the fleet's CA and the master's token file.
  appendFileSync(fleet.cliConfig, [
    `[provision]`,
    `ca_dir = ${JSON.stringify(fleet.caDir)}`,
    `tokens_file = ${JSON.stringify(fleet.tokenFile)}`,
    `releases_dir = ${JSON.stringify(join(work, "release"))}`,
    `identity = ${JSON.stringify(clientKey)}`,
    `known_hosts = ${JSON.stringify(knownHosts)}`,
    ``
  ].join("\n"))
  await startNode("p-edge", "127.0.0.2", false)
  await startNode("p-worker", "127.0.0.3", true)
}, 400_000)

afterAll(async () => {
  for (const n of nodes) n.node.remove()
  const leftovers = podmanOf(["ps", "-a", "-q", "--filter", `label=mcp.service=${SERVICE}`]).stdout.trim().split("\n").filter((l) => l !== "")
  if (leftovers.length > 0) podmanOf(["rm", "-f", ...leftovers])
  await master?.stop()
  await engine?.stop()
})

describe("mcp node provision on Debian nodes over SSH", () => {
  it("refuses a node whose host key it does not know, showing the fingerprint to accept, and writes nothing", async () => {
    const [edge] = nodes
    const before = footprint(edge!)
    const r = await provision(edge!, "--role", "edge")
    expect(r.code, explain(r, edge!)).toBe(1)
    expect(r.stderr).toContain(edge!.fingerprint)
    expect(r.stderr).toContain("--accept-host-key")
    expect(r.stderr).toContain("Nothing was changed on the node.")
    expect(footprint(edge!)).toBe(before)
    expect(existsSync(knownHosts) ? readFileSync(knownHosts, "utf8") : "").toBe("")
  }, 60_000)

  it("provisions the edge node from SSH access to a registered agent, its key made on the node", async () => {
    const [edge] = nodes
    const r = await provision(edge!, "--role", "edge", "--artifact", release.archive, "--accept-host-key", edge!.fingerprint)
    expect(r.code, explain(r, edge!)).toBe(0)
    expect(r.stdout).toMatch(/p-edge: provisioned \(\d+ steps changed\); the agent is registered and answering/)
    expect(r.stdout).toMatch(/uploading mcp-.*\.tar\.gz/)
    // The node had no container engine: Podman was installed with apt and its socket enabled.
    expect(r.stdout).toMatch(/container engine\s+changed\s+install Podman \(apt-get\), enable podman.socket/)
    expect(edge!.node.run("systemctl is-active podman.socket").trim()).toBe("active")
    // The host key is pinned now, under the name ssh uses for host:port.
    expect(readFileSync(knownHosts, "utf8")).toContain(`[127.0.0.1]:${edge!.sshPort} ssh-ed25519 `)

    // The layout and its modes; the TLS key exists only on the node.
    const modes = edge!.node.run(`stat -c '%n %U:%G %a' /etc/mcp /etc/mcp/p-edge.key /etc/mcp/p-edge.token /etc/mcp/mcp-agent.toml /etc/mcp/agent-tokens.toml /etc/mcp/ca.crt /etc/mcp/p-edge.crt`)
    expect(modes.trim().split("\n")).toEqual([
      "/etc/mcp root:mcp 750",
      "/etc/mcp/p-edge.key root:root 600",
      "/etc/mcp/p-edge.token root:root 600",
      "/etc/mcp/mcp-agent.toml root:root 600",
      "/etc/mcp/agent-tokens.toml root:root 600",
      "/etc/mcp/ca.crt root:root 644",
      "/etc/mcp/p-edge.crt root:root 644"
    ])
    expect(readdirSync(fleet.caDir).filter((f) => f.startsWith("p-edge"))).toEqual([])
    expect(edge!.node.run("readlink /opt/mcp/current").trim()).toBe(release.name)
    expect(edge!.node.run("systemctl is-active mcp-agent; systemctl is-enabled mcp-agent").trim()).toBe("active\nenabled")
    // The agent's token file lets the master and the operator in, not other nodes' tokens.
    const callers = edge!.node.run("grep -o 'name = \"[^\"]*\"' /etc/mcp/agent-tokens.toml")
    expect(callers).toContain(`"master"`)
    expect(callers).not.toContain(`"p-edge"`)
    // The master's token file gained the node's token (digest only).
    expect(readFileSync(fleet.tokenFile, "utf8")).toMatch(/name = "p-edge"/)
    const uid = edge!.node.run("id -u mcp").trim()
    expect(readFileSync(join(fleet.dir, "fleet.toml"), "utf8")).toContain(`mcp_uid = ${uid}`)
  }, 300_000)

  it("a dry run on the worker prints the plan and writes nothing", async () => {
    const [, worker] = nodes
    const before = footprint(worker!)
    const r = await provision(worker!, "--dry-run", "--accept-host-key", worker!.fingerprint)
    expect(r.code, explain(r, worker!)).toBe(0)
    expect(r.stdout).toMatch(/mcp user\s+would change\s+create mcp with UID \d+/)
    expect(r.stdout).toMatch(/release\s+would change\s+install mcp-/)
    expect(r.stdout).toContain("p-worker: dry run,")
    expect(footprint(worker!)).toBe(before)
  }, 120_000)

  it("refuses a worker where another user holds the fleet's UID, with nothing changed, and provisions it once that is fixed", async () => {
    const [edge, worker] = nodes
    const uid = edge!.node.run("id -u mcp").trim()
    worker!.node.run(`useradd --system --uid ${uid} --no-create-home --shell /usr/sbin/nologin squatter`)
    const before = footprint(worker!)
    const refused = await provision(worker!)
    expect(refused.code, explain(refused, worker!)).toBe(1)
    expect(refused.stderr).toContain(`stopped at "mcp user"`)
    expect(refused.stderr).toContain("squatter")
    expect(refused.stderr).toContain("Nothing was changed on the node.")
    expect(footprint(worker!)).toBe(before)

    worker!.node.run("userdel squatter")
    // A run that fails part-way: with a CLI config naming a master that is not there, everything
    // up to the agent is done, and the agent never registers. The output says what was kept.
    const wrongMaster = join(work, "wrong-master.toml")
    writeFileSync(wrongMaster, readFileSync(fleet.cliConfig, "utf8").replace(/^master = .*$/m, `master = ["127.0.0.1:9"]`))
    const partial = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, [LocalFleet.bins.mcp, "node", "provision", worker!.name, "--ssh", `root@127.0.0.1:${worker!.sshPort}`, "--address", worker!.address,
        "--port", String(worker!.agentPort), "--wait", "3", "--config", wrongMaster], (error, stdout, stderr) =>
        resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })))
    expect(partial.code, explain(partial, worker!)).toBe(1)
    expect(partial.stderr).toContain(`stopped at "agent"`)
    expect(partial.stderr).toMatch(/Done before it, and kept: mcp user, config directory, release, .*agent config.*; run the same command again to finish/)
    expect(worker!.node.run("readlink /opt/mcp/current").trim()).toBe(release.name)

    // The same command with the right master finishes it: only what differs changes.
    // Without --artifact: the release for its architecture from provision.releases_dir.
    const r = await provision(worker!, "--json")
    expect(r.code, explain(r, worker!)).toBe(0)
    const finished = (JSON.parse(r.stdout) as { steps: Array<{ step: string; status: string }> }).steps.filter((st) => st.status === "changed").map((st) => st.step)
    expect(finished).toEqual(["agent config", "agent", "proxy service"])
    expect(worker!.node.run("id -u mcp").trim()).toBe(uid)

    const list = await LocalFleet.mcp(fleet, ["node", "list", "--json"])
    const views = JSON.parse(list.stdout) as Array<{ info: { name: string; role: string; version: string }; health: string }>
    expect(views.filter((v) => v.info.name.startsWith("p-")).map((v) => [v.info.name, v.info.role, v.health, v.info.version]).sort()).toEqual([
      ["p-edge", "edge", "healthy", release.manifest.version],
      ["p-worker", "worker", "healthy", release.manifest.version]
    ])
  }, 300_000)

  it("the provisioned worker serves a deployed service through its proxy, by name, with a certificate from its CA", async () => {
    const [, worker] = nodes
    servicePort = await LocalFleet.freePort()
    const definition = join(work, `${SERVICE}.toml`)
    writeFileSync(definition, `name = "${SERVICE}"
node = "p-worker"
[[components]]
name = "web"
image = "${BUSYBOX_IMAGE}"
cmd = ["sh", "-c", "mkdir -p /www && echo served-by-a-provisioned-node > /www/index.html && exec httpd -f -p $PORT -h /www"]
  [[components.routes]]
  port = ${servicePort}
  mode = "l7"
`)
    const deployed = await LocalFleet.mcp(fleet, ["deploy", SERVICE, "--file", definition])
    expect(deployed.code, explain(deployed, worker!)).toBe(0)
    routeCa = worker!.node.run("cat /var/lib/mcp-agent/ca/ca.crt")
    let body = ""
    for (const until = Date.now() + 20_000; Date.now() < until && body !== "served-by-a-provisioned-node";) {
      body = await throughProxy(worker!)
      if (body !== "served-by-a-provisioned-node") await new Promise((resolve) => setTimeout(resolve, 250))
    }
    expect(body, `${body}\n--- mcp-proxy on the worker:\n${worker!.node.journal("mcp-proxy")}`).toBe("served-by-a-provisioned-node")
    expect(worker!.node.run("systemctl is-active mcp-proxy").trim()).toBe("active")
    const ps = await LocalFleet.mcp(fleet, ["ps", "--json"])
    expect(ps.stdout).toContain(`"p-worker"`)
  }, 120_000)

  it("a second provision changes nothing and leaves the agent running as it was", async () => {
    const [, worker] = nodes
    const before = footprint(worker!)
    const pid = worker!.node.run("systemctl show -P MainPID mcp-agent").trim()
    const r = await provision(worker!, "--json")
    expect(r.code, explain(r, worker!)).toBe(0)
    const outcome = JSON.parse(r.stdout) as { changed: boolean; steps: Array<{ step: string; status: string }> }
    expect(outcome.changed).toBe(false)
    expect(outcome.steps.filter((s) => s.status !== "unchanged")).toEqual([])
    expect(outcome.steps.map((s) => s.step)).toContain("registered")
    expect(footprint(worker!)).toBe(before)
    expect(worker!.node.run("systemctl show -P MainPID mcp-agent").trim()).toBe(pid)
  }, 120_000)


  describe("mcp agent upgrade", () => {
    let upgraded = ""
    let crashing = ""
    let dropped = ""
    const UPGRADE = "0.1.0-upgrade.1"

    beforeAll(() => {
      const out = join(work, "release-upgrade")
      upgraded = buildReleaseOfVersion(out, UPGRADE)
      // A build whose agent exits as it starts (the CLI in it still works).
      crashing = relabelRelease(upgraded, out, "0.1.0-crash.1", (dir) => {
        const entry = join(dir, "lib", "mcp-agent.mjs")
        writeFileSync(entry, `if (!process.argv.includes("--version")) { console.error("this build crashes on start, unit:", process.env["MCP_TEST_UNIT"]); process.exit(70) }\n${readFileSync(entry, "utf8")}`)
        // Its units differ too: the upgrade installs them (the agent says it started under the new
        // one), the rollback puts the previous ones back.
        const agentUnit = join(dir, "systemd", "mcp-agent.service")
        writeFileSync(agentUnit, readFileSync(agentUnit, "utf8").replace("[Service]\n", "[Service]\nEnvironment=MCP_TEST_UNIT=from-the-crashing-build\n"))
        appendFileSync(join(dir, "systemd", "mcp-proxy.service"), "# from-the-crashing-build\n")
      })
      dropped = relabelRelease(upgraded, out, "0.1.0-drop.1")
    }, 400_000)

    /** Requests to the deployed service through the worker's proxy every 50 ms while `during` runs: which failed, of how many. */
    const requestLoop = async <A>(during: () => Promise<A>): Promise<{ result: A; failed: Array<string>; sent: number }> => {
      const failed: Array<string> = []
      let sent = 0
      let running = true
      const loop = (async () => {
        while (running) {
          sent++
          const body = await throughProxy(nodes[1]!)
          if (body !== "served-by-a-provisioned-node") failed.push(`${new Date().toISOString()} ${body}`)
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
      })()
      try {
        return { result: await during(), failed, sent }
      } finally {
        running = false
        await loop
      }
    }

    const versions = async () => {
      const list = await LocalFleet.mcp(fleet, ["node", "list", "--json"])
      return Object.fromEntries((JSON.parse(list.stdout) as Array<{ info: { name: string; version: string }; health: string }>)
        .filter((v) => v.info.name.startsWith("p-")).map((v) => [v.info.name, `${v.info.version} ${v.health}`]))
    }

    it("upgrades the worker, then the edge node, while the worker's service keeps answering every request through its proxy", async () => {
      const [edge, worker] = nodes
      const workerPid = worker!.node.run("systemctl show -P MainPID mcp-agent").trim()
      const { result: r, failed, sent } = await requestLoop(() => LocalFleet.mcp(fleet, ["agent", "upgrade", "--artifact", upgraded, "--json"]))
      expect(r.code, explain(r, worker!)).toBe(0)
      const rows = JSON.parse(r.stdout) as Array<{ node: string; from: string; to: string; result: string; restartMs: number }>
      expect(rows.map((row) => [row.node, row.from, row.to, row.result])).toEqual([
        ["p-worker", release.name, `mcp-${UPGRADE}-linux-${process.arch}`, "upgraded"],
        ["p-edge", release.name, `mcp-${UPGRADE}-linux-${process.arch}`, "upgraded"]
      ])
      console.log(`upgrade: agent restart to answer ${rows.map((row) => `${row.node} ${row.restartMs} ms`).join(", ")}; ${sent} requests to the service during it`)
      expect(failed, `${failed.length} of ${sent} requests failed during the upgrade\n--- mcp-proxy:\n${worker!.node.journal("mcp-proxy")}\n--- mcp-agent:\n${worker!.node.journal("mcp-agent")}`).toEqual([])
      expect(sent).toBeGreaterThan(10)
      expect(await versions()).toEqual({ "p-edge": `${UPGRADE} healthy`, "p-worker": `${UPGRADE} healthy` })
      expect(worker!.node.run("systemctl show -P MainPID mcp-agent").trim()).not.toBe(workerPid)
      // The previous release is kept beside the new one, for a rollback by hand.
      for (const n of [edge!, worker!]) expect(n.node.run(`ls /opt/mcp`).split("\n")).toEqual(expect.arrayContaining([release.name, `mcp-${UPGRADE}-linux-${process.arch}`, "current"]))

      const again = await LocalFleet.mcp(fleet, ["agent", "upgrade", "--artifact", upgraded, "--json"])
      expect(again.code, explain(again, worker!)).toBe(0)
      expect((JSON.parse(again.stdout) as Array<{ result: string }>).map((row) => row.result)).toEqual(["already current", "already current"])
    }, 300_000)

    it("rolls a build that crashes on start back: the node answers with its previous version, and the upgrade stops there", async () => {
      const [, worker] = nodes
      const { result: r, failed } = await requestLoop(() => LocalFleet.mcp(fleet, ["agent", "upgrade", "--artifact", crashing, "--timeout", "8"]))
      expect(r.code, explain(r, worker!)).toBe(1)
      expect(r.stdout).toMatch(/p-worker\s+mcp-0\.1\.0-upgrade\.1-linux-\S+\s+mcp-0\.1\.0-crash\.1-linux-\S+\s+rolled back/)
      expect(r.stdout).toMatch(/p-edge\s+-\s+-\s+skipped/)
      expect(r.stdout).toContain("this build crashes on start, unit: from-the-crashing-build")
      expect(r.stderr).toContain("not upgraded: p-worker (rolled back), p-edge (skipped)")
      expect(failed).toEqual([])
      expect(worker!.node.run("readlink /opt/mcp/current").trim()).toBe(`mcp-${UPGRADE}-linux-${process.arch}`)
      expect(worker!.node.run("grep -c 'from-the-crashing-build' /etc/systemd/system/mcp-agent.service /etc/systemd/system/mcp-proxy.service || true").trim().split("\n"))
        .toEqual(["/etc/systemd/system/mcp-agent.service:0", "/etc/systemd/system/mcp-proxy.service:0"])
      expect(worker!.node.run("ls /etc/systemd/system/ | grep -c previous || true").trim()).toBe("0")
      expect(await versions()).toEqual({ "p-edge": `${UPGRADE} healthy`, "p-worker": `${UPGRADE} healthy` })
    }, 180_000)

    it("an SSH connection dropped in the middle of the upload leaves the node on its build", async () => {
      const [, worker] = nodes
      // The worker reached through a TCP relay that cuts both sides after 4 MiB from the CLI.
      const relay = createServer((client) => {
        const server = connect(worker!.sshPort, "127.0.0.1")
        let fromClient = 0
        client.on("data", (chunk: Buffer) => {
          fromClient += chunk.length
          if (fromClient > 4 * 1024 * 1024) {
            client.destroy()
            server.destroy()
          }
        })
        client.pipe(server).pipe(client)
        client.on("error", () => server.destroy())
        server.on("error", () => client.destroy())
      })
      await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve))
      const relayPort = (relay.address() as AddressInfo).port
      try {
        // The node's record and its host key under the relay's address, as if it had moved there.
        const fleetFile = join(fleet.dir, "fleet.toml")
        const record = readFileSync(fleetFile, "utf8")
        writeFileSync(fleetFile, record.replace(`ssh = "root@127.0.0.1:${worker!.sshPort}"`, `ssh = "root@127.0.0.1:${relayPort}"`))
        const key = readFileSync(knownHosts, "utf8").split("\n").find((l) => l.startsWith(`[127.0.0.1]:${worker!.sshPort} `))!
        appendFileSync(knownHosts, `${key.replace(`[127.0.0.1]:${worker!.sshPort}`, `[127.0.0.1]:${relayPort}`)}\n`)
        const pid = worker!.node.run("systemctl show -P MainPID mcp-agent").trim()

        const r = await LocalFleet.mcp(fleet, ["agent", "upgrade", "p-worker", "--artifact", dropped])
        expect(r.code, explain(r, worker!)).toBe(1)
        expect(r.stdout).toMatch(/p-worker\s+-\s+-\s+failed/)
        expect(`${r.stdout}${r.stderr}`).toMatch(/uploading the release/)
        expect(worker!.node.run("readlink /opt/mcp/current").trim()).toBe(`mcp-${UPGRADE}-linux-${process.arch}`)
        expect(worker!.node.run("ls -a /opt/mcp")).not.toContain("drop")
        expect(worker!.node.run("systemctl show -P MainPID mcp-agent").trim()).toBe(pid)
        expect(await versions()).toMatchObject({ "p-worker": `${UPGRADE} healthy` })
        writeFileSync(fleetFile, record)
      } finally {
        relay.close()
      }
    }, 120_000)
  })

  it("refuses a node whose host key changed", async () => {
    const [, worker] = nodes
    worker!.node.run("rm /etc/ssh/ssh_host_*_key* && ssh-keygen -A >/dev/null && systemctl restart ssh")
    const before = footprint(worker!)
    const r = await provision(worker!)
    expect(r.code, explain(r, worker!)).toBe(1)
    expect(r.stderr).toMatch(/host key .*changed|changed.*host key/i)
    expect(footprint(worker!)).toBe(before)
  }, 60_000)
})

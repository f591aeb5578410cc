/**
 * bench/provision: what `mcp node provision` and `mcp agent upgrade` cost per node, and how long
 * an agent does not answer while it is upgraded.
 *
 * N Debian nodes (Podman containers with systemd and sshd, as in test/Provision.test.ts) are
 * provisioned one after another from this machine, then upgraded to a second build (one
 * `mcp agent upgrade <node>` per node). Figures, each beside a floor measured in the same run:
 *   - provision: wall time of the command (a fresh node: HAProxy is installed with apt, Podman's
 *     socket is the host's), against OpenSSH copying the same archive to the node and unpacking it
 *     there (scp + ssh tar), the part no provisioning can skip; and a second run, which changes nothing;
 *   - upgrade: wall time of the command, against the same floor;
 *   - agent downtime: the longest stretch in which the agent's port refused TCP connections
 *     (probed every 10 ms) during the upgrade, against the same probe around a plain
 *     `systemctl restart mcp-agent` of the running build.
 * With the size of the archive.
 *
 *   node --import tsx bench/provision.ts [N=2]
 */
import { spawnSync } from "node:child_process"
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { requireNodeImage, type SystemdNode, sshdOnLoopback, startSystemdNode } from "../test/support/DebianNode.js"
import * as LocalFleet from "../test/support/LocalFleet.js"
import { startPodmanService } from "../test/support/Podman.js"
import { buildRelease, buildReleaseOfVersion } from "../test/support/Release.js"
import { makeKey } from "../test/support/Sshd.js"

const count = Number(process.argv[2] ?? 2)
if (!Number.isInteger(count) || count < 1) throw new Error(`usage: node --import tsx bench/provision.ts [N=2]; got ${process.argv[2]}`)

const work = mkdtempSync(join(tmpdir(), "mcp-bench-provision-"))
const key = join(work, "operator_ed25519")
const knownHosts = join(work, "known_hosts")

interface BenchNode {
  readonly name: string
  readonly address: string
  readonly sshPort: number
  readonly agentPort: number
  readonly node: SystemdNode
}

/** Probes host:port every 10 ms until stopped; the longest run of refused connections, in ms. */
const downtimeProbe = (host: string, port: number) => {
  let running = true
  let longest = 0
  let downSince: number | undefined
  const attempt = () =>
    new Promise<boolean>((resolve) => {
      const socket = connect({ host, port })
      socket.setTimeout(500, () => { socket.destroy(); resolve(false) })
      socket.on("connect", () => { socket.destroy(); resolve(true) })
      socket.on("error", () => resolve(false))
    })
  const loop = (async () => {
    while (running) {
      const up = await attempt()
      const now = performance.now()
      if (!up && downSince === undefined) downSince = now
      if (up && downSince !== undefined) {
        longest = Math.max(longest, now - downSince)
        downSince = undefined
      }
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  })()
  return async () => {
    running = false
    await loop
    return longest
  }
}

const timed = async <A>(f: () => Promise<A>): Promise<[A, number]> => {
  const started = performance.now()
  const a = await f()
  return [a, performance.now() - started]
}

const must = (r: { code: number; stdout: string; stderr: string }, what: string) => {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}:\n${r.stdout}${r.stderr}`)
}

const run = async () => {
  requireNodeImage("bench/provision.ts")
  makeKey(key)
  const engine = await startPodmanService()
  const nodes: Array<BenchNode> = []
  let master: LocalFleet.Daemon | undefined
  try {
    const masterPort = await LocalFleet.freePort()
    const fleet = await LocalFleet.prepare(join(work, "operator"), { masters: [`127.0.0.1:${masterPort}`] })
    master = await LocalFleet.spawnDaemon(LocalFleet.bins.master, LocalFleet.writeMasterConfig(fleet, { port: masterPort, interval: "1s" }))
    console.log("building the release and a second build to upgrade to...")
    const release = buildRelease(join(work, "release"))
    const next = buildReleaseOfVersion(join(work, "release-next"), "0.1.0-bench.1")
    appendFileSync(fleet.cliConfig, `[provision]\nca_dir = ${JSON.stringify(fleet.caDir)}\ntokens_file = ${JSON.stringify(fleet.tokenFile)}\nidentity = ${JSON.stringify(key)}\nknown_hosts = ${JSON.stringify(knownHosts)}\n`)

    for (let i = 0; i < count; i++) {
      const name = `bench-${i + 1}`
      const sshPort = await LocalFleet.freePort()
      const agentPort = await LocalFleet.freePort()
      const dir = join(work, name)
      mkdirSync(dir)
      const node = startSystemdNode(`mcp-${name}-${process.pid}`, {
        hostNetwork: true,
        volumes: [...sshdOnLoopback(dir, sshPort, readFileSync(`${key}.pub`, "utf8")), [join(engine.socketPath, ".."), "/run/podman"]]
      })
      nodes.push({ name, address: `127.0.0.${i + 2}`, sshPort, agentPort, node })
      node.run("for i in $(seq 50); do systemctl is-active --quiet ssh && break; sleep 0.2; done; systemctl is-active ssh")
    }

    const ssh = ["-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", `UserKnownHostsFile=${join(work, "ssh_known_hosts")}`]
    const rows: Array<Array<string>> = []
    for (const n of nodes) {
      // The floor: OpenSSH copies and unpacks the same archive.
      const [, floor] = await timed(async () => {
        const scp = spawnSync("scp", [...ssh, "-P", String(n.sshPort), release.archive, "root@127.0.0.1:/tmp/floor.tar.gz"], { encoding: "utf8" })
        if (scp.status !== 0) throw new Error(`scp: ${scp.stderr}`)
        const untar = spawnSync("ssh", [...ssh, "-p", String(n.sshPort), "root@127.0.0.1", "mkdir -p /tmp/floor && tar -C /tmp/floor -xzf /tmp/floor.tar.gz && rm -rf /tmp/floor /tmp/floor.tar.gz"], { encoding: "utf8" })
        if (untar.status !== 0) throw new Error(`ssh tar: ${untar.stderr}`)
      })
      const fingerprint = n.node.run("ssh-keygen -l -E sha256 -f /etc/ssh/ssh_host_ed25519_key.pub").split(" ")[1]!
      const [provisioned, provisionMs] = await timed(() =>
        LocalFleet.mcp(fleet, ["node", "provision", n.name, "--ssh", `root@127.0.0.1:${n.sshPort}`, "--address", n.address, "--port", String(n.agentPort), "--artifact", release.archive, "--accept-host-key", fingerprint]))
      must(provisioned, `mcp node provision ${n.name}`)
      // Again: nothing to change, what a re-run (or a check of a node) costs.
      const [again, againMs] = await timed(() =>
        LocalFleet.mcp(fleet, ["node", "provision", n.name, "--ssh", `root@127.0.0.1:${n.sshPort}`, "--address", n.address, "--port", String(n.agentPort), "--artifact", release.archive]))
      must(again, `mcp node provision ${n.name} (again)`)

      // The downtime floor: the running build restarted by systemd.
      const restartProbe = downtimeProbe(n.address, n.agentPort)
      await new Promise((resolve) => setTimeout(resolve, 200))
      n.node.run("systemctl restart mcp-agent && for i in $(seq 300); do journalctl -u mcp-agent --since '-10s' | grep -q 'listening on' && break; sleep 0.05; done")
      await new Promise((resolve) => setTimeout(resolve, 3000))
      const restartDown = await restartProbe()

      const probe = downtimeProbe(n.address, n.agentPort)
      const [upgraded, upgradeMs] = await timed(() => LocalFleet.mcp(fleet, ["agent", "upgrade", n.name, "--artifact", next]))
      const upgradeDown = await probe()
      must(upgraded, `mcp agent upgrade ${n.name}`)
      rows.push([n.name, `${(provisionMs / 1000).toFixed(1)} s`, `${(againMs / 1000).toFixed(1)} s`, `${(upgradeMs / 1000).toFixed(1)} s`, `${(floor / 1000).toFixed(1)} s`,
        `${(provisionMs / floor).toFixed(1)}x`, `${(upgradeMs / floor).toFixed(1)}x`, `${upgradeDown.toFixed(0)} ms`, `${restartDown.toFixed(0)} ms`, `${(upgradeDown / Math.max(restartDown, 1)).toFixed(2)}x`])
    }
    const header = ["NODE", "PROVISION", "AGAIN", "UPGRADE", "FLOOR scp+tar", "PROV/FLOOR", "UPG/FLOOR", "DOWNTIME", "FLOOR restart", "DOWN/FLOOR"]
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
    console.log(`artifact ${release.name}.tar.gz: ${(statSync(release.archive).size / 1024 / 1024).toFixed(1)} MiB`)
    for (const r of [header, ...rows]) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join("  "))
  } finally {
    for (const n of nodes) n.node.remove()
    await master?.stop()
    await engine.stop()
    rmSync(work, { recursive: true, force: true })
  }
}

await run()
process.exit(0)

// The systemd units in packaging/systemd: each hardening directive is in the file (parsed, not
// grepped), systemd itself accepts them (systemd-analyze verify on a Debian node with systemd as
// PID 1), and the daemons really run under them: docs/INSTALL.md's steps on that node with the
// release artifact (npm run release; the node has no Node), a master and an agent started by
// systemctl, the agent registered (`mcp node list`).
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as TOML from "smol-toml"
import * as Layout from "../packages/cli/src/provision/Layout.js"
import { podman, requireNodeImage, startSystemdNode, type SystemdNode } from "./support/DebianNode.js"
import { type PodmanService, startPodmanService } from "./support/Podman.js"
import { buildRelease } from "./support/Release.js"

const repo = fileURLToPath(new URL("..", import.meta.url))
const unitPath = (name: string) => path.join(repo, "packaging", "systemd", `${name}.service`)

/** A unit file as systemd reads it: sections of keys, each key with every value it was given, in order. */
type Unit = Map<string, Map<string, Array<string>>>

const parseUnit = (text: string): Unit => {
  const unit: Unit = new Map()
  let section: Map<string, Array<string>> | undefined
  // Backslash-newline continues a line, as in systemd.syntax(7).
  for (const raw of text.replace(/\\\n/g, " ").split("\n")) {
    const line = raw.trim()
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue
    const header = /^\[([A-Za-z]+)\]$/.exec(line)
    if (header !== null) {
      if (unit.has(header[1]!)) throw new Error(`section [${header[1]}] appears twice`)
      section = new Map()
      unit.set(header[1]!, section)
      continue
    }
    const eq = line.indexOf("=")
    if (section === undefined || eq <= 0) throw new Error(`not a section header nor key=value inside a section: ${line}`)
    const key = line.slice(0, eq).trim()
    const values = section.get(key) ?? []
    values.push(line.slice(eq + 1).trim())
    section.set(key, values)
  }
  return unit
}

const loadUnit = (name: string): Unit => parseUnit(readFileSync(unitPath(name), "utf8"))

/** The one value of a key (a key given twice is a mistake for these), or undefined. */
const single = (unit: Unit, section: string, key: string): string | undefined => {
  const values = unit.get(section)?.get(key)
  if (values === undefined) return undefined
  expect(values, `${section}.${key} is set once`).toHaveLength(1)
  return values[0]
}

const all = (unit: Unit, section: string, key: string): Array<string> => unit.get(section)?.get(key) ?? []

/** What both daemons get, whatever their user. */
const commonService: Record<string, string> = {
  Type: "simple",
  NoNewPrivileges: "yes",
  ProtectSystem: "strict",
  ProtectHome: "yes",
  PrivateTmp: "yes",
  PrivateDevices: "yes",
  ProtectKernelTunables: "yes",
  ProtectKernelModules: "yes",
  ProtectKernelLogs: "yes",
  ProtectControlGroups: "yes",
  ProtectClock: "yes",
  ProtectHostname: "yes",
  RestrictSUIDSGID: "yes",
  LockPersonality: "yes",
  RestrictRealtime: "yes",
  RestrictNamespaces: "yes",
  SystemCallArchitectures: "native",
  UMask: "0077",
  Restart: "on-failure",
  RestartSec: "5s",
  KillMode: "mixed",
  KillSignal: "SIGTERM",
  TimeoutStopSec: "30s",
  SendSIGKILL: "yes",
  LimitNOFILE: "16384",
  AmbientCapabilities: ""
}

const expected = {
  "mcp-master": {
    user: "mcp",
    config: "/etc/mcp/mcp-master.toml",
    stateDirectory: "mcp-master",
    readWrite: ["/var/lib/mcp-master"],
    capabilities: [] as Array<string>,
    families: ["AF_UNIX", "AF_INET", "AF_INET6"]
  },
  "mcp-agent": {
    user: "root",
    config: "/etc/mcp/mcp-agent.toml",
    stateDirectory: "mcp-agent",
    readWrite: ["/var/lib/mcp-agent", "-/run/podman"],
    capabilities: ["CAP_NET_BIND_SERVICE", "CAP_DAC_READ_SEARCH"],
    families: ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"]
  }
} as const

describe("systemd units: the files", () => {
  for (const [name, want] of Object.entries(expected)) {
    describe(name, () => {
      const unit = loadUnit(name)

      it("has the three sections, starts after the network, and is wanted by multi-user.target", () => {
        expect([...unit.keys()]).toEqual(["Unit", "Service", "Install"])
        expect(single(unit, "Unit", "Description")).toMatch(/^MCP /)
        expect(all(unit, "Unit", "After").join(" ").split(/\s+/)).toContain("network-online.target")
        expect(all(unit, "Unit", "Wants").join(" ").split(/\s+/)).toContain("network-online.target")
        expect(single(unit, "Install", "WantedBy")).toBe("multi-user.target")
      })

      it("runs the installed release's program with the config under /etc/mcp, as its user, Node's flags in NODE_OPTIONS", () => {
        expect(single(unit, "Service", "ExecStart")).toBe(`/opt/mcp/current/${name} --config ${want.config}`)
        const environment = all(unit, "Service", "Environment")
        for (const line of environment) expect(line, "Environment=KEY=VALUE, one per line").toMatch(/^[A-Z_][A-Z0-9_]*=\S+$/)
        expect(environment.filter((l) => l.startsWith("NODE_OPTIONS="))).toEqual([expect.stringMatching(/^NODE_OPTIONS=--[a-z-]+(=\S+)?( --[a-z-]+(=\S+)?)*$/)])
        expect(single(unit, "Service", "User")).toBe(want.user)
        expect(single(unit, "Service", "Group")).toBe(want.user)
        expect(single(unit, "Service", "StateDirectory")).toBe(want.stateDirectory)
        expect(single(unit, "Service", "StateDirectoryMode")).toBe("0700")
        expect(single(unit, "Service", "WorkingDirectory")).toBe(`/var/lib/${want.stateDirectory}`)
      })

      it("has every hardening directive with its value", () => {
        for (const [key, value] of Object.entries(commonService)) {
          expect(single(unit, "Service", key), `[Service] ${key}`).toBe(value)
        }
        expect(single(unit, "Service", "ProtectProc")).toBe("invisible")
        // Node's JIT needs W+X pages: this directive would make the daemon abort at start.
        expect(single(unit, "Service", "MemoryDenyWriteExecute")).toBeUndefined()
      })

      it("writes only to its data dir (and, for the agent, the engine socket's directory)", () => {
        expect(all(unit, "Service", "ReadWritePaths").join(" ").split(/\s+/)).toEqual(want.readWrite)
        for (const key of ["ReadWriteDirectories", "BindPaths", "InaccessiblePaths"]) {
          expect(all(unit, "Service", key), key).toEqual([])
        }
      })

      it("keeps only the capabilities it needs, and only the address families it uses", () => {
        const bounding = single(unit, "Service", "CapabilityBoundingSet")
        expect(bounding, "CapabilityBoundingSet is set (empty means none)").toBeDefined()
        expect(bounding!.split(/\s+/).filter((c) => c !== "")).toEqual(want.capabilities)
        expect(single(unit, "Service", "RestrictAddressFamilies")!.split(/\s+/)).toEqual(want.families)
      })

      it("filters system calls to the service set without the privileged ones", () => {
        expect(all(unit, "Service", "SystemCallFilter")).toEqual(["@system-service", "~@privileged"])
        expect(single(unit, "Service", "SystemCallErrorNumber")).toBe("EPERM")
      })

      it("gives up after repeated failed starts", () => {
        expect(single(unit, "Unit", "StartLimitIntervalSec")).toBe("300")
        expect(single(unit, "Unit", "StartLimitBurst")).toBe("5")
      })
    })
  }

  it("the proxy's unit runs HAProxy on the files provisioning names in the agent's config, and outlives the agent", () => {
    const unit = loadUnit("mcp-proxy")
    expect([...unit.keys()]).toEqual(["Unit", "Service", "Install"])
    expect(single(unit, "Install", "WantedBy")).toBe("multi-user.target")
    // Ordered after the agent (which writes the configuration), never bound to it: an agent's
    // restart or upgrade must not stop the proxy.
    expect(all(unit, "Unit", "After").join(" ").split(/\s+/)).toContain("mcp-agent.service")
    for (const key of ["Requires", "BindsTo", "PartOf", "Requisite"]) expect(all(unit, "Unit", key), key).toEqual([])
    const config = Layout.agentConfig({ node: "n", role: "worker", address: "10.0.0.5", port: 9444, masters: ["10.0.0.1:9555"], internalZone: "svc.mcp.internal" })
    const proxy = (TOML.parse(config) as { proxy: { dir: string; master_socket: string } }).proxy
    expect(single(unit, "Service", "ExecStart")).toBe(`/usr/sbin/haproxy -W -db -S ${proxy.master_socket},mode,600 -f ${proxy.dir}/haproxy.cfg`)
    expect(all(unit, "Service", "ExecStartPre").join("\n")).toContain(`${proxy.dir}/haproxy.cfg`)
    expect(single(unit, "Service", "Restart")).toBe("always")
    expect(all(unit, "Service", "ReadWritePaths")).toEqual([proxy.dir])
    expect(single(unit, "Service", "CapabilityBoundingSet")).toBe("CAP_NET_BIND_SERVICE")
    for (const key of ["NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "RestrictSUIDSGID", "RestrictNamespaces"]) {
      expect(single(unit, "Service", key), key).toBe("yes")
    }
    expect(single(unit, "Service", "ProtectSystem")).toBe("strict")
  })

  it("the master alone runs unprivileged in its own user namespace; the agent follows the engine's socket", () => {
    expect(single(loadUnit("mcp-master"), "Service", "PrivateUsers")).toBe("yes")
    const agent = loadUnit("mcp-agent")
    expect(all(agent, "Unit", "Wants").join(" ")).toContain("podman.socket")
    expect(all(agent, "Unit", "After").join(" ")).toContain("podman.socket")
  })

  it("the parser refuses what systemd would not read as a unit", () => {
    expect(() => parseUnit("Foo=bar\n")).toThrow(/inside a section/)
    expect(() => parseUnit("[Service]\n[Service]\n")).toThrow(/twice/)
    expect(parseUnit("[Service]\nA=1 \\\n 2\nA=3\n").get("Service")?.get("A")).toEqual(["1   2", "3"])
  })
})

// ---------------------------------------------------------------------------------------------
// On a Debian node with systemd (a Podman container with systemd as PID 1).

const container = `mcp-units-${process.pid}-${Date.now().toString(36)}`
let engine: PodmanService | undefined
let node: SystemdNode | undefined

/** Runs a bash script in the node as root; fails with its output unless it exits 0. */
const onNode = (script: string, timeoutMs?: number): string => node!.run(script, timeoutMs)
const journal = (unit: string) => node!.journal(unit)

describe("systemd units on a Debian node with systemd", () => {
  beforeAll(async () => {
    requireNodeImage("the systemd unit tests on a Debian node")
    // The agent's engine: the host's Podman API, its socket's directory mounted where podman.socket
    // would put it on a real node (/run/podman), which the agent's unit may write to.
    engine = await startPodmanService()
    const release = buildRelease(mkdtempSync(path.join(tmpdir(), "mcp-units-release-")))
    node = startSystemdNode(container, { volumes: [[path.dirname(engine.socketPath), "/run/podman"]] })
    // docs/INSTALL.md step 2 on the node: the archive unpacked under /opt/mcp, `current`, the CLI
    // on the PATH and the units from the release.
    const cp = podman(["cp", release.archive, `${container}:/root/`])
    if (cp.status !== 0) throw new Error(`podman cp ${release.archive}: ${cp.output}`)
    onNode(`
      mkdir -p /opt/mcp && tar -C /opt/mcp -xzf /root/${release.name}.tar.gz
      ln -sfn ${release.name} /opt/mcp/current
      ln -sfn /opt/mcp/current/mcp /usr/local/bin/mcp
      cp /opt/mcp/current/systemd/mcp-master.service /opt/mcp/current/systemd/mcp-agent.service /etc/systemd/system/
      ! command -v node
    `)
  }, 300_000)

  afterAll(async () => {
    node?.remove()
    await engine?.stop()
  })

  it("systemd-analyze verify accepts both units, and security rates them OK or better", () => {
    const verify = podman(["exec", container, "systemd-analyze", "verify", "/etc/systemd/system/mcp-master.service", "/etc/systemd/system/mcp-agent.service"])
    expect(verify.output.trim(), "systemd-analyze verify prints nothing for good units").toBe("")
    expect(verify.status).toBe(0)
    onNode("systemctl daemon-reload")
    for (const [name, ceiling] of [["mcp-master", 1.5], ["mcp-agent", 2.5]] as const) {
      const security = podman(["exec", container, "systemd-analyze", "security", "--no-pager", `${name}.service`])
      const score = /Overall exposure level for \S+: ([0-9.]+)/.exec(security.stdout)
      expect(score, security.output).not.toBeNull()
      console.log(`systemd-analyze security ${name}.service: ${score![1]}`)
      expect(Number(score![1]), `${name} exposure`).toBeLessThanOrEqual(ceiling)
    }
  })

  it("the daemons run under the units: INSTALL.md's steps, then the agent registers with the master", () => {
    // docs/INSTALL.md steps 2-6 on one node: user, CA, certificates, tokens, configs.
    onNode(`
      useradd --system --user-group --home-dir /var/lib/mcp-master --no-create-home --shell /usr/sbin/nologin mcp
      install -d -m 0700 /root/mcp-admin && cd /root/mcp-admin
      mcp ca init ca
      mcp ca issue master --ca-dir ca --ip 127.0.0.1 --dns master --usage both
      mcp ca issue n1 --ca-dir ca --ip 127.0.0.1 --dns n1 --usage both
      (umask 077
       mcp token create --file tokens.toml --kind human --role admin --name operator > operator.token
       mcp token create --file tokens.toml --kind system --role admin --name master > master.token
       mcp token create --file tokens.toml --kind system --role guest --name n1 > n1.token)
      install -d -m 0750 -o root -g mcp /etc/mcp
      install -m 0644 ca/ca.crt ca/master.crt ca/n1.crt /etc/mcp/
      install -m 0600 -o mcp -g mcp ca/master.key master.token /etc/mcp/
      install -m 0600 -o mcp -g mcp tokens.toml /etc/mcp/master-tokens.toml
      install -m 0600 -o root -g root ca/n1.key n1.token /etc/mcp/
      install -m 0600 -o root -g root tokens.toml /etc/mcp/agent-tokens.toml
      cat > /etc/mcp/mcp-master.toml <<'EOF'
listen = "127.0.0.1:9555"
data_dir = "/var/lib/mcp-master"
agent_token_file = "/etc/mcp/master.token"
[tls]
cert = "/etc/mcp/master.crt"
key = "/etc/mcp/master.key"
ca = "/etc/mcp/ca.crt"
[auth]
token_file = "/etc/mcp/master-tokens.toml"
[heartbeat]
interval = "2s"
EOF
      cat > /etc/mcp/mcp-agent.toml <<'EOF'
node = "n1"
role = "worker"
listen = "127.0.0.1:9444"
node_address = "127.0.0.1"
data_dir = "/var/lib/mcp-agent"
[tls]
cert = "/etc/mcp/n1.crt"
key = "/etc/mcp/n1.key"
ca = "/etc/mcp/ca.crt"
[auth]
token_file = "/etc/mcp/agent-tokens.toml"
[runtime]
socket = "/run/podman/podman.sock"
[master]
addresses = ["127.0.0.1:9555"]
token_file = "/etc/mcp/n1.token"
EOF
      chmod 0640 /etc/mcp/mcp-master.toml /etc/mcp/mcp-agent.toml && chgrp mcp /etc/mcp/mcp-master.toml
      install -d -m 0700 /root/.config/mcp
      printf 'master = ["127.0.0.1:9555"]\\nca = "/etc/mcp/ca.crt"\\ntoken_file = "/root/mcp-admin/operator.token"\\n' > /root/.config/mcp/mcp.toml
    `, 120_000)
    onNode("systemctl daemon-reload && systemctl enable --now mcp-master.service mcp-agent.service")

    const deadline = Date.now() + 60_000
    let listing = ""
    while (Date.now() < deadline) {
      const r = podman(["exec", container, "mcp", "node", "list", "--json"])
      listing = r.output
      if (r.status === 0 && /"n1"/.test(r.stdout) && /healthy/i.test(r.stdout) && !/unhealthy/i.test(r.stdout)) break
      spawnSync("sleep", ["1"])
    }
    const diagnosis = `mcp node list: ${listing}\n--- master:\n${journal("mcp-master")}\n--- agent:\n${journal("mcp-agent")}`
    expect(listing, diagnosis).toMatch(/"n1"/)
    expect(listing, diagnosis).toMatch(/healthy/i)
    expect(onNode("systemctl is-active mcp-master mcp-agent").split("\n").filter((l) => l !== ""), diagnosis).toEqual(["active", "active"])

    // Who they run as, and what the sandbox left them (read from the node's /proc).
    const status = (name: string) => onNode(`cat /proc/$(systemctl show -P MainPID ${name})/status`)
    const master = status("mcp-master")
    const agent = status("mcp-agent")
    const mcpUid = onNode("id -u mcp").trim()
    expect(master).toMatch(new RegExp(`^Uid:\\s+${mcpUid}\\s`, "m"))
    expect(master).toMatch(/^NoNewPrivs:\s+1$/m)
    expect(master).toMatch(/^CapBnd:\s+0{16}$/m)
    expect(agent).toMatch(/^Uid:\s+0\s/m)
    expect(agent).toMatch(/^NoNewPrivs:\s+1$/m)
    // CAP_DAC_READ_SEARCH (2) and CAP_NET_BIND_SERVICE (10): 0x404, less what the node itself
    // lacks (a Podman container has no CAP_DAC_READ_SEARCH, so here it is 0x400).
    const nodeBounding = BigInt(`0x${/^CapBnd:\s+([0-9a-f]+)$/m.exec(onNode("cat /proc/1/status"))![1]}`)
    const agentBounding = BigInt(`0x${/^CapBnd:\s+([0-9a-f]+)$/m.exec(agent)![1]}`)
    expect(agentBounding.toString(16)).toBe((0x404n & nodeBounding).toString(16))
    expect(onNode("stat -c '%U %a' /var/lib/mcp-master /var/lib/mcp-agent").trim().split("\n")).toEqual(["mcp 700", "root 700"])

    // Stopped by systemctl (SIGTERM), the master is gone and starts again.
    onNode("systemctl stop mcp-master && ! systemctl is-active --quiet mcp-master && systemctl start mcp-master")
  }, 240_000)

  it("a stop that hangs escalates to SIGKILL after TimeoutStopSec", () => {
    // The shipped master unit with a main process that ignores SIGTERM, and a short timeout.
    onNode(`
      mkdir -p /etc/systemd/system/mcp-master.service.d
      printf '[Service]\\nExecStart=\\nExecStart=/bin/sh -c "trap \\x27\\x27 TERM; while :; do sleep 1; done"\\nTimeoutStopSec=2s\\n' > /etc/systemd/system/mcp-master.service.d/zz-hang.conf
      systemctl daemon-reload && systemctl restart mcp-master && sleep 1 && systemctl is-active mcp-master
    `)
    const started = Date.now()
    onNode("systemctl stop mcp-master")
    const took = Date.now() - started
    expect(took).toBeGreaterThanOrEqual(1_500)
    expect(took).toBeLessThan(15_000)
    expect(journal("mcp-master")).toMatch(/State 'stop-sigterm' timed out\. Killing\./)
    onNode("rm /etc/systemd/system/mcp-master.service.d/zz-hang.conf && systemctl daemon-reload")
  }, 60_000)
})

/**
 * The operator's SSH connection to a real Debian node: a Podman container of the node image
 * (scripts/setup-debian-node.sh) with systemd as PID 1, whose own sshd (started by systemd at
 * boot, with the host key made when the image was) listens on 127.0.0.1 only. The node passes
 * the provisioning preflight, and its host key is the one pinned.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Preflight from "../packages/cli/src/provision/Preflight.js"
import * as Ssh from "../packages/cli/src/provision/Ssh.js"
import * as SystemUser from "../packages/cli/src/provision/SystemUser.js"
import { requireNodeImage, type SystemdNode, sshdOnLoopback, startSystemdNode } from "./support/DebianNode.js"
import { freePort } from "./support/LocalFleet.js"
import { makeKey } from "./support/Sshd.js"

const work = mkdtempSync(join(tmpdir(), "mcp-node-ssh-"))
const clientKey = join(work, "operator_ed25519")
let node: SystemdNode | undefined
let port = 0

beforeAll(async () => {
  requireNodeImage("the SSH tests on a Debian node")
  makeKey(clientKey)
  port = await freePort()
  node = startSystemdNode(`mcp-node-ssh-${process.pid}-${Date.now().toString(36)}`, {
    hostNetwork: true,
    volumes: sshdOnLoopback(work, port, readFileSync(`${clientKey}.pub`, "utf8"))
  })
  // sshd is up once systemd says so (the node's boot has finished, but the unit may still start).
  node.run("for i in $(seq 50); do systemctl is-active --quiet ssh && break; sleep 0.2; done; systemctl is-active ssh")
}, 120_000)

afterAll(() => {
  node?.remove()
})

describe("SSH to a Debian node with systemd (its own sshd)", () => {
  it.live("the node's host key is the one offered; once accepted, the node passes the preflight for this machine's release", () =>
    Effect.gen(function* () {
      const target = { user: "root", host: "127.0.0.1", port }
      const knownHostsFile = join(work, "known_hosts")
      // The fingerprint as the node's console would show it.
      const onConsole = node!.run("ssh-keygen -l -E sha256 -f /etc/ssh/ssh_host_ed25519_key.pub").split(" ")[1]!
      const first = yield* Effect.flip(Effect.scoped(Ssh.connect(target, { identity: clientKey, knownHostsFile })))
      expect(first._tag).toBe("HostKeyUnknown")
      expect((first as Ssh.HostKeyUnknown).fingerprint).toBe(onConsole)

      node!.run("touch /run/before-preflight && sleep 1.1")
      const facts = yield* Effect.scoped(Effect.flatMap(Ssh.connect(target, { identity: clientKey, knownHostsFile, accept: onConsole }), Preflight.probe))
      expect(facts).toMatchObject({ os: "Debian GNU/Linux 12 (bookworm)", systemd: true, root: true, machine: execFileSync("uname", ["-m"], { encoding: "utf8" }).trim() })
      expect(Number(facts.glibc!.split(".")[1])).toBeGreaterThanOrEqual(28)
      expect(Preflight.problems(facts, process.arch)).toEqual([])
      // Nothing on the node changed: the preflight only looks (systemd's own state aside).
      expect(node!.run("find /etc /opt /srv /usr /var/lib -xdev -newer /run/before-preflight -not -path '/var/lib/systemd/*' 2>/dev/null || true")).toBe("")
    }))

  it.live("the mcp user: a UID someone else holds stops it with nothing changed; then it is made with the fleet's UID, and never changed again", () =>
    Effect.gen(function* () {
      const target = { user: "root", host: "127.0.0.1", port }
      const knownHostsFile = join(work, "known_hosts")
      const onConsole = node!.run("ssh-keygen -l -E sha256 -f /etc/ssh/ssh_host_ed25519_key.pub").split(" ")[1]!
      const ensure = (fleetUid: number) =>
        Effect.scoped(Effect.flatMap(Ssh.connect(target, { identity: clientKey, knownHostsFile, accept: onConsole }), (s) => SystemUser.ensureUser(s, { fleetUid, home: "/var/lib/mcp-agent" })))
      const accountsDigest = () => node!.run("sha256sum /etc/passwd /etc/group /etc/shadow /etc/gshadow")

      node!.run("useradd --system --uid 991 --no-create-home --shell /usr/sbin/nologin squatter")
      const before = accountsDigest()
      const collision = yield* Effect.flip(ensure(991))
      expect(collision._tag).toBe("UidCollision")
      expect(collision.message).toContain("taken there by user squatter")
      expect(accountsDigest()).toBe(before)
      expect(node!.run("getent passwd mcp || echo none").trim()).toBe("none")

      expect(yield* ensure(990)).toEqual({ _tag: "create", uid: 990 })
      expect(node!.run("id mcp; getent passwd mcp | cut -d: -f6,7").trim()).toBe("uid=990(mcp) gid=990(mcp) groups=990(mcp)\n/var/lib/mcp-agent:/usr/sbin/nologin")

      // Asked again, with another fleet UID: the user keeps the one it has, and nothing is written.
      const made = accountsDigest()
      expect(yield* ensure(985)).toEqual({ _tag: "exists", uid: 990, gid: 990 })
      expect(accountsDigest()).toBe(made)
    }))
})

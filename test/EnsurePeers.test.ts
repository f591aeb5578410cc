// scripts/ensure-peers.mjs (package.json "pretest"): with every peer present it passes in well
// under a second; with some missing (simulated by where it looks for binaries) it fails at once,
// listing them and the one command that installs them. MCP_PEERS_INSTALL=never here: a test never
// installs anything, even as root.
import { spawnSync } from "node:child_process"
import { mkdtempSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const script = fileURLToPath(new URL("../scripts/ensure-peers.mjs", import.meta.url))
const check = (env: Record<string, string>) => {
  const started = Date.now()
  const r = spawnSync(process.execPath, [script], { encoding: "utf8", env: { ...process.env, MCP_PEERS_INSTALL: "never", ...env } })
  return { status: r.status, out: r.stdout + r.stderr, ms: Date.now() - started }
}

describe("ensure-peers (before npm test)", () => {
  it("passes quickly when every peer is present", () => {
    const r = check({ MCP_PEERS_VERBOSE: "1" })
    expect(r.status, r.out).toBe(0)
    // Its own measure (the check, without node's start-up); the whole script is about 0.1 s.
    const ms = Number(/checked in (\d+) ms/.exec(r.out)?.[1])
    expect(ms, r.out).toBeLessThan(500)
  })

  it("fails at once listing what is missing and the command that installs it", () => {
    // A PATH with curl and podman only: haproxy, pebble, ... are missing, the images are there.
    const bin = mkdtempSync(join(tmpdir(), "mcp-fakebin-"))
    for (const b of ["curl", "podman"]) symlinkSync(`/usr/bin/${b}`, join(bin, b))
    const r = check({ MCP_PEERS_PATH: bin })
    expect(r.status, r.out).toBe(1)
    expect(r.out).toContain("the integration tests need peers this machine does not have")
    expect(r.out).toMatch(/haproxy, caddy, socat, openssl, pebble, pdns_server \(pdns-server\), sqlite3, dig \(dnsutils\), knotd \(knot\), ip \(iproute2\), sshd \(openssh-server\), nft \(nftables\), prometheus, chromium\n\s+\(from scripts\/setup-peers\.sh\)/)
    expect(r.out).toMatch(/runc\n\s+\(from scripts\/setup-podman\.sh\)/)
    expect(r.out).not.toContain("image localhost/mcp-busybox:v1")
    expect(r.out).toContain("sudo bash scripts/setup-podman.sh && sudo bash scripts/setup-peers.sh\n")
    expect(r.out).not.toContain("==> ") // nothing was run
  })

  it("without Podman the images count as missing too", () => {
    const bin = mkdtempSync(join(tmpdir(), "mcp-fakebin-"))
    const r = check({ MCP_PEERS_PATH: bin })
    expect(r.status, r.out).toBe(1)
    expect(r.out).toContain("podman, runc, image localhost/mcp-busybox:v1")
  })
})

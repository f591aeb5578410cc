// The quick start as a user runs it (scripts/quickstart.ts --once, what `bash scripts/quickstart.sh
// --once` ends with): a master serving the internal zone, an agent running its own HAProxy, and
// `hello` deployed, resolved by name from the master's DNS server and requested over HTTPS through
// the proxy with its certificate verified. Its files go to a temporary directory.
import { describe, expect, it } from "vitest"
import { execFile } from "node:child_process"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { privateDir, removeDir, requireBinary } from "./support/ManagedProcess.js"
import { isRunning } from "./support/Reaper.js"

const repo = fileURLToPath(new URL("..", import.meta.url))

const runQuickStart = (dir: string) =>
  new Promise<{ code: number; output: string }>((resolve) =>
    execFile(
      process.execPath,
      ["--import", "tsx", join(repo, "scripts/quickstart.ts"), "--once"],
      { cwd: repo, env: { ...process.env, MCP_QUICKSTART_DIR: dir }, maxBuffer: 16 * 1024 * 1024, timeout: 110_000 },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, output: `${stdout}${stderr}` })
    ))


describe("the quick start", () => {
  it("serves hello by name: the master's DNS answers, HTTPS through the agent's HAProxy with a verified certificate", async () => {
    requireBinary("haproxy", "the quick start test", "Fix: run: bash scripts/setup-peers.sh (as root)")
    requireBinary("podman", "the quick start test", "Fix: run: bash scripts/setup-podman.sh (as root)")
    const dir = privateDir("quickstart")
    try {
      const { code, output } = await runQuickStart(dir)
      expect(code, output).toBe(0)

      // The name, from the master's zone.
      expect(output).toMatch(/\$ mcp dns list\nzone svc\.mcp\.internal, serial \d+, served on 127\.0\.0\.1:\d+ \(UDP and TCP\)\nNAME +ADDRESS +NODE +UPDATED\nhello\.svc\.mcp\.internal +127\.0\.0\.1 +local /)
      expect(output).toMatch(/\$ dig @127\.0\.0\.1 -p \d+ \+short hello\.svc\.mcp\.internal\n127\.0\.0\.1\n/)
      // The request by name through the proxy, answered by the container, the certificate verified.
      expect(output).toContain(
        `$ curl --cacert ${join(dir, "local/ca/ca.crt")} --resolve hello.svc.mcp.internal:8443:127.0.0.1 https://hello.svc.mcp.internal:8443/\n` +
          `hello from mcp\n(HTTP 200; the certificate names DNS:hello.svc.mcp.internal, issued by "MCP agent local CA", verified)\n`
      )

      // The agent's HAProxy is its supervised child, shown under the node in `mcp tree`...
      const proxy = /\n│   └── local  \[running, node healthy\]\n│       └── proxy \(haproxy, managed\)  \[running, pid (\d+), up [^\]]+\]\n/.exec(output)
      expect(proxy, output).not.toBeNull()
      // ...and the agent's stop (the quick start's clean-up) stopped it.
      expect(isRunning(Number(proxy![1]))).toBe(false)
      expect(output).not.toMatch(/cleanup: /)
    } finally {
      removeDir(dir)
    }
  }, 120_000)
})

// `mcp ca request` on a node and `mcp ca sign` where the CA is: the key stays on the node, the
// CSR goes one way and the chain the other. Runs the real binary, as a user would.
import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { createPrivateKey, X509Certificate } from "node:crypto"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const bin = fileURLToPath(new URL("../bin/mcp.js", import.meta.url))

const mcp = (args: ReadonlyArray<string>) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [bin, ...args], (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : Number(error.code), stdout, stderr })
    )
  )

describe("mcp ca request / sign", () => {
  it("a CSR made on the node is signed with the CA's names, for the node's own key", async () => {
    const root = mkdtempSync(join(tmpdir(), "mcp-ca-request-"))
    try {
      const caDir = join(root, "ca")
      const nodeDir = join(root, "node")
      expect((await mcp(["ca", "init", caDir])).code).toBe(0)
      const before = readdirSync(caDir).sort()

      const keyPath = join(nodeDir, "n2.key")
      const noDir = await mcp(["ca", "request", "n2", "--key", keyPath])
      expect(noDir.code).toBe(1)
      expect(noDir.stderr).toContain(`mcp: ${nodeDir} is not an existing directory`)

      mkdirSync(nodeDir, { mode: 0o700 })
      const first = await mcp(["ca", "request", "n2", "--key", keyPath])
      expect(first.code).toBe(0)
      expect(first.stderr).toContain(`created key ${keyPath} (mode 0600)`)
      expect(first.stdout).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n[\s\S]*-----END CERTIFICATE REQUEST-----\n$/)
      expect(statSync(keyPath).mode & 0o777).toBe(0o600)
      const again = await mcp(["ca", "request", "n2", "--key", keyPath])
      expect(again.code).toBe(0)
      expect(again.stderr).toContain(`reusing key ${keyPath}`)

      const csrFile = join(root, "n2.csr")
      writeFileSync(csrFile, again.stdout)
      const out = join(root, "n2.crt")
      const signed = await mcp(["ca", "sign", csrFile, "--ca-dir", caDir, "--name", "n2", "--ip", "10.0.0.5", "--dns", "n2", "--out", out])
      expect(signed.code).toBe(0)
      expect(signed.stdout).toContain("signed server+client certificate n2 for IP:10.0.0.5, DNS:n2")
      expect(statSync(out).mode & 0o777).toBe(0o644)
      const chain = readFileSync(out, "utf8")
      const caPem = readFileSync(join(caDir, "ca.crt"), "utf8")
      expect(chain.endsWith(caPem)).toBe(true)
      const leaf = new X509Certificate(chain)
      expect(leaf.verify(new X509Certificate(caPem).publicKey)).toBe(true)
      expect(leaf.subjectAltName).toBe("IP Address:10.0.0.5, DNS:n2")
      expect(leaf.checkPrivateKey(createPrivateKey(readFileSync(keyPath, "utf8")))).toBe(true)
      expect(readdirSync(caDir).sort()).toEqual(before)

      // Without --out the chain goes to stdout and the summary to stderr.
      const printed = await mcp(["ca", "sign", csrFile, "--ca-dir", caDir, "--name", "n2", "--dns", "n2", "--usage", "server"])
      expect(printed.code).toBe(0)
      expect(printed.stdout.match(/-----BEGIN CERTIFICATE-----/g)).toHaveLength(2)
      expect(printed.stderr).toContain("signed server certificate n2 for DNS:n2")

      writeFileSync(csrFile, "not a request\n")
      const bad = await mcp(["ca", "sign", csrFile, "--ca-dir", caDir, "--name", "n2", "--dns", "n2"])
      expect(bad.code).toBe(1)
      expect(bad.stderr).toContain(`mcp: ${csrFile} holds no PEM block`)
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  }, 120_000)
})

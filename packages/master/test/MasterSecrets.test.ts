/** The master refuses to start on a secret file group or others may read, naming it and the fix. */
import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as Master from "../src/daemon/Master.js"
import * as MasterConfig from "../src/daemon/MasterConfig.js"

describe("master secret files", () => {
  it("refuses an open system token file or TLS key at start, without their content", () => {
    const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), "mcp-master-secrets-"))
    try {
      const file = (name: string, mode: number) => {
        const path = nodePath.join(dir, name)
        fs.writeFileSync(path, `secret-${name}`, { mode })
        fs.chmodSync(path, mode)
        return path
      }
      const config = (o: { readonly agentToken: string; readonly key: string }) =>
        Either.getOrThrow(MasterConfig.decode(
          `listen = "127.0.0.1:9443"\ndata_dir = ${JSON.stringify(nodePath.join(dir, "data"))}\nagent_token_file = ${JSON.stringify(o.agentToken)}\n` +
            `[tls]\ncert = ${JSON.stringify(file("tls.crt", 0o644))}\nkey = ${JSON.stringify(o.key)}\nca = ${JSON.stringify(file("ca.crt", 0o644))}\n` +
            `[auth]\ntoken_file = ${JSON.stringify(nodePath.join(dir, "tokens.toml"))}\n`
        ))
      const failure = (build: () => unknown): string => {
        try {
          build()
        } catch (e) {
          return (e as Error).message
        }
        return "started"
      }
      const goodToken = file("system.token", 0o600)
      const goodKey = file("tls.key", 0o600)
      expect(failure(() => Master.layer(config({ agentToken: goodToken, key: goodKey })))).toBe("started")

      const openToken = file("open.token", 0o644)
      const tokenFailure = failure(() => Master.layer(config({ agentToken: openToken, key: goodKey })))
      expect(tokenFailure).toBe(`system token file (agent_token_file) ${openToken} has mode 0644, which lets group or others read it; run: chmod 600 ${openToken}`)

      const openKey = file("open.key", 0o640)
      const keyFailure = failure(() => Master.layer(config({ agentToken: goodToken, key: openKey })))
      expect(keyFailure).toContain(`TLS private key ([tls] key) ${openKey} has mode 0640`)
      expect(keyFailure).not.toContain("secret-")
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

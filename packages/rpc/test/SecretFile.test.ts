/**
 * The secret-file rule the daemons share: 0600 or tighter and owned by the daemon's user, refused
 * otherwise with the file, the mode or owner found and the fix, never the content.
 */
import { describe, expect, it } from "vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as SecretFile from "../src/SecretFile.js"

const SECRET = "s3cr3t-value-that-must-not-leak"

const withFile = (mode: number, body: (path: string) => void) => {
  const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), "mcp-secret-"))
  try {
    const path = nodePath.join(dir, "key.pem")
    fs.writeFileSync(path, SECRET, { mode })
    fs.chmodSync(path, mode)
    body(path)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const thrown = (f: () => unknown): unknown => {
  try {
    f()
  } catch (e) {
    return e
  }
  throw new Error("expected a throw")
}

describe("SecretFile", () => {
  it("reads a 0600 file and a 0400 one", () => {
    withFile(0o600, (path) => expect(SecretFile.readSync(path, "TLS private key")).toBe(SECRET))
    withFile(0o400, (path) => expect(SecretFile.readSync(path, "TLS private key")).toBe(SECRET))
  })

  it("refuses a file group or others may read, naming it, its mode and the fix, not its content", () => {
    for (const mode of [0o644, 0o640, 0o604, 0o660]) {
      withFile(mode, (path) => {
        const error = thrown(() => SecretFile.readSync(path, "TLS private key ([tls] key)"))
        expect(error).toBeInstanceOf(SecretFile.SecretFileInsecure)
        const message = (error as Error).message
        expect(message).toContain(`TLS private key ([tls] key) ${path}`)
        expect(message).toContain(`mode 0${mode.toString(8)}`)
        expect(message).toContain(`chmod 600 ${path}`)
        expect(message).not.toContain(SECRET)
      })
    }
  })

  it("names a missing file", () => {
    const error = thrown(() => SecretFile.readSync("/nonexistent/mcp/key.pem", "PowerDNS API key file"))
    expect(error).toBeInstanceOf(SecretFile.SecretFileUnavailable)
    expect((error as Error).message).toBe("PowerDNS API key file /nonexistent/mcp/key.pem: does not exist")
  })

  it("refuses a file another user owns, with the chown that fixes it", () => {
    expect(SecretFile.exposure("/k", { mode: 0o100600, uid: 1000 }, 1000)).toBeUndefined()
    expect(SecretFile.exposure("/k", { mode: 0o100600, uid: 0 }, 1000)).toBe(
      "is owned by uid 0, not by this daemon's user (uid 1000); run: chown 1000 /k && chmod 600 /k"
    )
    // The mode is the first thing to fix: it is what lets others read the secret.
    expect(SecretFile.exposure("/k", { mode: 0o100644, uid: 0 }, 1000)).toContain("chmod 600 /k")
    // Without a uid to compare (no POSIX users), only the mode counts.
    expect(SecretFile.exposure("/k", { mode: 0o100600, uid: 0 }, undefined)).toBeUndefined()
  })
})

// The CertIssuer contract on the embedded local CA, and the memory issuer's own semantics (it
// writes no files, so the file-based contract does not apply to it).
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Pki } from "@mcp/rpc"
import { CertError, makeMemory } from "../src/CertIssuer.js"
import * as LocalCaIssuer from "../src/LocalCaIssuer.js"
import { makeFaults } from "../src/Faults.js"
import { certIssuerContract } from "./CertIssuerContract.js"

const dataDir = mkdtempSync(join(tmpdir(), "mcp-local-ca-"))
afterAll(() => rmSync(dataDir, { recursive: true, force: true }))

certIssuerContract("local CA", LocalCaIssuer.layer(dataDir), () => readFileSync(join(dataDir, "ca", Pki.CA_CERT_FILE), "utf8"))

describe("memory CertIssuer", () => {
  it.effect("issues distinct serials and forgets revoked certificates; revoke is idempotent", () =>
    Effect.gen(function*() {
      const issuer = yield* makeMemory()
      const a = yield* issuer.issue("a.example.test")
      const b = yield* issuer.issue("a.example.test")
      expect(a.serial).not.toBe(b.serial)
      expect((yield* issuer.live).map((c) => c.serial)).toEqual([a.serial, b.serial])
      yield* issuer.revoke(a)
      yield* issuer.revoke(a)
      expect((yield* issuer.live).map((c) => c.serial)).toEqual([b.serial])
    }))

  it.effect("an injected fault fails issue with a CertError", () =>
    Effect.gen(function*() {
      const faults = yield* makeFaults
      const issuer = yield* makeMemory({ faults })
      yield* faults.arm("cert.issue")
      const result = yield* Effect.either(issuer.issue("a.example.test"))
      expect(Either.isLeft(result) && result.left instanceof CertError).toBe(true)
    }))
})

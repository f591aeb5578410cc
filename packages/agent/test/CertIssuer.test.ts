// The CertIssuer contract on the embedded local CA, and the memory issuer's own semantics (it
// writes no files, so the file-based contract does not apply to it).
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Pki } from "@mcp/rpc"
import { CertError, makeMemory } from "../src/certs/CertIssuer.js"
import * as LocalCaIssuer from "../src/certs/LocalCaIssuer.js"
import { makeFaults } from "../src/Faults.js"
import { certIssuerContract } from "./CertIssuerContract.js"
import { layerPlatform } from "./Platform.js"

const dataDir = mkdtempSync(join(tmpdir(), "mcp-local-ca-"))
afterAll(() => rmSync(dataDir, { recursive: true, force: true }))

certIssuerContract("local CA", LocalCaIssuer.layer(dataDir).pipe(Layer.provide(layerPlatform)), () => readFileSync(join(dataDir, "ca", Pki.CA_CERT_FILE), "utf8"))

// [certs] ca_dir: an existing CA (as `mcp ca init` makes it) issues, and the data dir gets no CA of its own.
const platformCa = join(dataDir, "platform-ca")
const externalData = join(dataDir, "external")
await Effect.runPromise(Pki.initCa(platformCa).pipe(Effect.provide(layerPlatform)))
certIssuerContract(
  "local CA with ca_dir",
  LocalCaIssuer.layer(externalData, { caDir: platformCa }).pipe(Layer.provide(layerPlatform)),
  () => readFileSync(join(platformCa, Pki.CA_CERT_FILE), "utf8")
)

describe("local CA with ca_dir", () => {
  it.effect("refuses to start without the CA files, naming the fix, and creates none", () =>
    Effect.gen(function*() {
      const missing = join(dataDir, "no-such-ca")
      const error = yield* Effect.flip(LocalCaIssuer.make(join(dataDir, "data-2"), { caDir: missing }).pipe(Effect.provide(layerPlatform)))
      expect(error).toBeInstanceOf(CertError)
      expect(error.reason).toContain("mcp ca init")
      expect(existsSync(missing)).toBe(false)
    }))

  it.effect("issues from the given CA and never creates one in the data dir", () =>
    Effect.gen(function*() {
      const issuer = yield* LocalCaIssuer.make(externalData, { caDir: platformCa }).pipe(Effect.provide(layerPlatform))
      const cert = yield* issuer.issue("edge.example.test")
      expect(cert.certPath.startsWith(join(externalData, "certs"))).toBe(true)
      expect(existsSync(join(externalData, "ca"))).toBe(false)
      yield* issuer.revoke(cert)
    }))
})

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

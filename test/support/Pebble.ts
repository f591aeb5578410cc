/**
 * Test harness for a real ACME CA: starts pebble (Let's Encrypt's test server) as a child process
 * on 127.0.0.1 with its own TLS certificate from `@mcp/rpc` Pki, and a tiny DNS responder for its VA.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { Pki } from "@mcp/rpc"
import * as dgram from "node:dgram"
import { readFileSync, writeFileSync } from "node:fs"
import * as https from "node:https"
import * as path from "node:path"
import { Effect } from "effect"
import { freeTcpPort, privateDir, removeDir, requireBinary, startManagedProcess } from "./ManagedProcess.js"

/** A free TCP port on 127.0.0.1 (closed again before it is returned). */
export const freePort = freeTcpPort

// ---------------------------------------------------------------------------------------------
// DNS: pebble's VA resolves challenge names through `-dnsserver`. This answers A 127.0.0.1 for
// every name (so a real http-01 reaches the test's server) and TXT from a map (real dns-01).

export interface TestDns {
  /** host:port for pebble's -dnsserver */
  readonly address: string
  readonly setTxt: (name: string, value: string) => void
  readonly clearTxt: (name: string) => void
  /** TXT queries seen, for asserting that a validation really looked. */
  readonly txtQueries: ReadonlyArray<string>
  readonly stop: () => Promise<void>
}

const TYPE_A = 1
const TYPE_TXT = 16

const normalizeName = (name: string): string => name.toLowerCase().replace(/\.$/, "")

const answerFor = (query: Buffer, txt: ReadonlyMap<string, ReadonlyArray<string>>, seen: Array<string>): Buffer | undefined => {
  if (query.length < 12 || query.readUInt16BE(4) !== 1) return undefined
  const labels: Array<string> = []
  let offset = 12
  while (offset < query.length) {
    const length = query[offset]!
    if (length === 0) break
    if (length > 63) return undefined // compression in a question: not from pebble
    labels.push(query.subarray(offset + 1, offset + 1 + length).toString("ascii"))
    offset += length + 1
  }
  if (offset + 5 > query.length) return undefined
  const qtype = query.readUInt16BE(offset + 1)
  const questionEnd = offset + 5
  const name = normalizeName(labels.join("."))

  const rdatas: Array<Buffer> = []
  if (qtype === TYPE_A) rdatas.push(Buffer.from([127, 0, 0, 1]))
  if (qtype === TYPE_TXT) {
    seen.push(name)
    for (const value of txt.get(name) ?? []) {
      const bytes = Buffer.from(value, "ascii")
      rdatas.push(Buffer.concat([Buffer.from([bytes.length]), bytes]))
    }
  }

  const header = Buffer.alloc(12)
  query.copy(header, 0, 0, 2) // id
  // QR, opcode 0, AA, RD copied from the query; RA 0; NOERROR.
  header.writeUInt16BE(0x8400 | (query.readUInt16BE(2) & 0x0100), 2)
  header.writeUInt16BE(1, 4)
  header.writeUInt16BE(rdatas.length, 6)
  const answers = rdatas.map((rdata) => {
    const rr = Buffer.alloc(12)
    rr.writeUInt16BE(0xc00c, 0) // pointer to the question's name
    rr.writeUInt16BE(qtype, 2)
    rr.writeUInt16BE(1, 4) // IN
    rr.writeUInt32BE(0, 6) // TTL 0: a cleared record is gone at once
    rr.writeUInt16BE(rdata.length, 10)
    return Buffer.concat([rr, rdata])
  })
  return Buffer.concat([header, query.subarray(12, questionEnd), ...answers])
}

export const startTestDns = (): Promise<TestDns> =>
  new Promise((resolve, reject) => {
    const txt = new Map<string, Array<string>>()
    const seen: Array<string> = []
    const socket = dgram.createSocket("udp4")
    socket.on("message", (message, remote) => {
      const reply = answerFor(message, txt, seen)
      if (reply !== undefined) socket.send(reply, remote.port, remote.address)
    })
    socket.once("error", reject)
    socket.bind(0, "127.0.0.1", () => {
      const { port } = socket.address()
      resolve({
        address: `127.0.0.1:${port}`,
        setTxt: (name, value) => txt.set(normalizeName(name), [...(txt.get(normalizeName(name)) ?? []), value]),
        clearTxt: (name) => void txt.delete(normalizeName(name)),
        txtQueries: seen,
        stop: () => new Promise<void>((done) => socket.close(() => done()))
      })
    })
  })

// ---------------------------------------------------------------------------------------------
// pebble

export interface PebbleOptions {
  /** PEBBLE_VA_ALWAYS_VALID=1: every challenge passes without being checked. */
  readonly alwaysValid: boolean
  /** The port pebble's VA fetches http-01 challenges from (on the address the DNS gives). */
  readonly httpPort?: number
  /** Send pebble's VA lookups to this DNS server (host:port). */
  readonly dnsServer?: string
}

export interface Pebble {
  readonly pid: number
  readonly directoryUrl: string
  readonly managementUrl: string
  /** PEM of the CA that signed pebble's own TLS certificate: the ACME client trusts this. */
  readonly tlsCa: string
  readonly httpPort: number
  /** The root that signs issued certificates (new at every start). */
  readonly issuingRoot: () => Promise<string>
  readonly stop: () => Promise<void>
}

const SETUP_HINT = "Fix: run: bash scripts/setup-peers.sh (as root), or apt-get install -y pebble"

/** GET over HTTPS trusting `ca`; resolves status and body, rejects on network errors. */
export const httpsGet = (url: string, ca: string, timeoutMs = 2000): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const req = https.get(url, { ca, timeout: timeoutMs }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }))
      res.on("error", reject)
    })
    req.on("timeout", () => req.destroy(new Error(`no answer from ${url} within ${timeoutMs} ms`)))
    req.on("error", reject)
  })

export const startPebble = async (options: PebbleOptions): Promise<Pebble> => {
  const pebble = requireBinary("pebble", "the ACME tests", SETUP_HINT)
  const dir = privateDir("pebble")
  try {
    const caDir = path.join(dir, "ca")
    const tls = await Effect.runPromise(
      Effect.zipRight(
        Pki.initCa(caDir, { commonName: "pebble test TLS CA" }),
        Pki.issueCertificate(caDir, "pebble", { ips: ["127.0.0.1"], dns: ["localhost"], usage: "server", days: 2, outDir: dir })
      ).pipe(Effect.provide(NodeFileSystem.layer))
    )
    const tlsCa = readFileSync(path.join(caDir, Pki.CA_CERT_FILE), "utf8")
    const [listenPort, managementPort, tlsPort] = [await freePort(), await freePort(), await freePort()]
    const httpPort = options.httpPort ?? (await freePort())
    const configPath = path.join(dir, "pebble-config.json")
    writeFileSync(
      configPath,
      JSON.stringify({
        pebble: {
          listenAddress: `127.0.0.1:${listenPort}`,
          managementListenAddress: `127.0.0.1:${managementPort}`,
          certificate: tls.certPath,
          privateKey: tls.keyPath,
          httpPort,
          tlsPort,
          ocspResponderURL: "",
          externalAccountBindingRequired: false
        }
      })
    )

    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PEBBLE_VA_NOSLEEP: "1",
      PEBBLE_WFE_NONCEREJECT: "0",
      PEBBLE_AUTHZREUSE: "0",
      PEBBLE_VA_ALWAYS_VALID: options.alwaysValid ? "1" : "0"
    }
    const args = ["-config", configPath, ...(options.dnsServer !== undefined ? ["-dnsserver", options.dnsServer] : [])]
    const directoryUrl = `https://127.0.0.1:${listenPort}/dir`
    const managementUrl = `https://127.0.0.1:${managementPort}`
    const pebbleProcess = await startManagedProcess({
      name: "pebble",
      command: pebble,
      args,
      env,
      dir,
      ready: { awaiting: `GET ${directoryUrl} to answer 200`, check: () => httpsGet(directoryUrl, tlsCa, 500).then((r) => r.status === 200, () => false) },
      timeoutMs: 10_000,
      graceMs: 3000
    })

    return {
      pid: pebbleProcess.pid,
      directoryUrl,
      managementUrl,
      tlsCa,
      httpPort,
      issuingRoot: async () => {
        const { status, body } = await httpsGet(`${managementUrl}/roots/0`, tlsCa)
        if (status !== 200) throw new Error(`pebble's /roots/0 answered ${status}`)
        return body
      },
      stop: pebbleProcess.dispose
    }
  } catch (e) {
    removeDir(dir)
    throw e
  }
}

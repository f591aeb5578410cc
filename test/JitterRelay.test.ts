// The chaos fleet's stand-in for tc netem's delay jitter (test/support/JitterRelay.ts): every
// chunk is held for its own random delay, within the bound, and the bytes arrive in order.
import { afterEach, describe, expect, it } from "vitest"
import * as net from "node:net"
import { type JitterRelay, startJitterRelay } from "./support/JitterRelay.js"

const closers: Array<() => Promise<void>> = []
afterEach(async () => {
  // The last started first: a relay before the server it relays to.
  for (const close of closers.splice(0).reverse()) await close()
})

/** An echo server on loopback; resolves with its port. */
const echoServer = async () => {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((s) => {
    sockets.add(s)
    s.on("close", () => sockets.delete(s))
    s.pipe(s)
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()))
  closers.push(() => new Promise<void>((r) => {
    for (const s of sockets) s.destroy()
    server.close(() => r())
  }))
  return (server.address() as net.AddressInfo).port
}

const connect = (relay: JitterRelay) => {
  const [host, port] = relay.address.split(":")
  return net.connect(Number(port), host)
}

describe("JitterRelay", () => {
  it("delivers every byte in order, both ways, though each chunk is held for its own random delay", async () => {
    const port = await echoServer()
    const relay = await startJitterRelay({ host: "127.0.0.1", target: { host: "127.0.0.1", port }, maxDelayMs: 40 })
    closers.push(relay.close)
    const socket = connect(relay)
    await new Promise<void>((r) => socket.once("connect", () => r()))
    let received = ""
    socket.setEncoding("utf8")
    socket.on("data", (d: string) => (received += d))
    const sent = Array.from({ length: 50 }, (_, i) => `<${i}>`)
    const t0 = Date.now()
    for (const chunk of sent) {
      socket.write(chunk)
      await new Promise((r) => setTimeout(r, 5))
    }
    while (received.length < sent.join("").length && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 10))
    expect(received).toBe(sent.join(""))
    socket.destroy()
  })

  it("delays a round trip by the two random holds, never more than twice the bound", async () => {
    const port = await echoServer()
    // The same draw every time: each way is held exactly 30 ms.
    const relay = await startJitterRelay({ host: "127.0.0.1", target: { host: "127.0.0.1", port }, maxDelayMs: 60, random: () => 0.5 })
    closers.push(relay.close)
    const socket = connect(relay)
    await new Promise<void>((r) => socket.once("connect", () => r()))
    const t0 = Date.now()
    const answer = new Promise<string>((r) => socket.once("data", (d: Buffer) => r(d.toString())))
    socket.write("ping")
    expect(await answer).toBe("ping")
    const elapsed = Date.now() - t0
    expect(elapsed).toBeGreaterThanOrEqual(58)
    expect(elapsed).toBeLessThan(500)
    socket.destroy()
  })

  it("resets the client when the target refuses, as a killed master would", async () => {
    const port = await echoServer()
    await closers.shift()!() // the target is gone: its port refuses
    const relay = await startJitterRelay({ host: "127.0.0.1", target: { host: "127.0.0.1", port }, maxDelayMs: 10 })
    closers.push(relay.close)
    const socket = connect(relay)
    socket.on("error", () => {})
    const closed = await Promise.race([
      new Promise<string>((r) => socket.once("close", () => r("closed"))),
      new Promise<string>((r) => setTimeout(() => r("still open after 2 s"), 2000))
    ])
    expect(closed).toBe("closed")
  })
})

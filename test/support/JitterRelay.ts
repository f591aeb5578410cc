/**
 * A TCP relay that holds every chunk it forwards for a random 0..maxDelayMs before passing it on,
 * each direction in order: the delay jitter `tc netem` would put on one path, for a kernel without
 * sch_netem (this machine's). The chaos fleet puts it between the agents and the master, so every
 * heartbeat and its answer arrive late by a different amount.
 *
 * A chunk is held for its own random delay, but never passes the one before it (TCP keeps order):
 * it leaves at max(previous departure, arrival + delay). Either side closing or failing closes
 * the other.
 */
import * as net from "node:net"

export interface JitterRelay {
  /** Where the relay listens: `host:port`. */
  readonly address: string
  readonly close: () => Promise<void>
}

export const startJitterRelay = async (options: {
  /** The address to listen on (a port is picked). */
  readonly host: string
  readonly target: { readonly host: string; readonly port: number }
  readonly maxDelayMs: number
  readonly random?: () => number
}): Promise<JitterRelay> => {
  const random = options.random ?? Math.random
  const open = new Set<net.Socket>()
  /** Forwards `from`'s bytes to `to`, each chunk late by its own delay, in order. */
  const relay = (from: net.Socket, to: net.Socket) => {
    // One queue and one timer per direction: timers of different lengths due in the same
    // millisecond may fire in any order, the queue's head never.
    const queue: Array<{ readonly at: number; readonly send: () => void }> = []
    let departs = 0
    let timer: NodeJS.Timeout | undefined
    const pump = () => {
      timer = undefined
      while (queue.length > 0 && queue[0]!.at <= Date.now()) queue.shift()!.send()
      if (queue.length > 0) timer = setTimeout(pump, queue[0]!.at - Date.now())
    }
    const later = (delayMs: number, send: () => void) => {
      departs = Math.max(departs, Date.now() + delayMs)
      queue.push({ at: departs, send })
      if (timer === undefined) timer = setTimeout(pump, departs - Date.now())
    }
    from.on("data", (chunk: Buffer) => later(random() * options.maxDelayMs, () => to.destroyed || to.write(chunk)))
    from.on("end", () => later(random() * options.maxDelayMs, () => to.destroyed || to.end()))
    // A reset or refusal (the master killed) resets the other side at once; a clean close, once
    // what is still held for it has left.
    from.on("close", (hadError) => (hadError ? to.destroy() : later(0, () => to.destroy())))
    // The error itself needs nothing more: "close" follows with hadError, and resets the other side.
    from.on("error", () => {})
  }
  const server = net.createServer((client) => {
    const upstream = net.connect(options.target.port, options.target.host)
    for (const s of [client, upstream]) {
      open.add(s)
      s.on("close", () => open.delete(s))
    }
    relay(client, upstream)
    relay(upstream, client)
  })
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, options.host, () => resolve())
  })
  const { port } = server.address() as net.AddressInfo
  return {
    address: `${options.host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy()
        server.close(() => resolve())
      })
  }
}

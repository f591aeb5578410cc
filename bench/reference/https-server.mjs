/**
 * A reference for bench/footprint: a plain node:https server answering the same ndjson request as
 * bench/reference/rpc-server.ts, with no library at all: what serving HTTPS costs in Node itself.
 *
 * Environment: PORT, CERT and KEY (PEM files). Prints "listening" when it serves.
 */
import { readFileSync } from "node:fs"
import { createServer } from "node:https"

createServer({ cert: readFileSync(process.env.CERT), key: readFileSync(process.env.KEY) }, (request, response) => {
  request.resume()
  request.on("end", () => {
    response.setHeader("content-type", "application/ndjson")
    response.end(`${JSON.stringify({ _tag: "Exit", requestId: "1", exit: { _tag: "Success", value: { at: Date.now() } } })}\n`)
  })
}).listen(Number(process.env.PORT), () => console.log("listening"))

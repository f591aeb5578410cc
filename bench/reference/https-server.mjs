/**
 * A reference for the benches (bench/footprint, bench/heartbeats): a plain node:https server
 * answering an ndjson RPC request the way an @effect/rpc server does (it parses the request's
 * JSON and answers its id with an Exit), with no library at all: what serving HTTPS and handling
 * a small JSON POST costs in Node itself. Connections are kept alive, as Node's server does by
 * default.
 *
 * Environment: PORT, CERT and KEY (PEM files). Prints "listening" when it serves.
 */
import { readFileSync } from "node:fs"
import { createServer } from "node:https"

createServer({ cert: readFileSync(process.env.CERT), key: readFileSync(process.env.KEY) }, (request, response) => {
  let body = ""
  request.setEncoding("utf8")
  request.on("data", (chunk) => (body += chunk))
  request.on("end", () => {
    let id = "1"
    try {
      id = JSON.parse(body.split("\n")[0]).id ?? id
    } catch {
      // footprint's ping sends a valid frame; anything else is still answered
    }
    response.setHeader("content-type", "application/ndjson")
    response.end(`${JSON.stringify({ _tag: "Exit", requestId: id, exit: { _tag: "Success", value: { known: true, at: Date.now() } } })}\n`)
  })
}).listen(Number(process.env.PORT), () => console.log("listening"))

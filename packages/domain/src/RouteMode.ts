/**
 * How a route's TLS is handled. Its own module (re-exported by ServiceDefinition) so that Routes,
 * and the RPC contracts with it, load without the whole service definition.
 */
import { choice } from "./Choice.js"

export const RouteMode = choice(["l4", "l7"], `"l4" (TLS passed through to the service) or "l7" (TLS terminated by the proxy)`)
export type RouteMode = typeof RouteMode.Type

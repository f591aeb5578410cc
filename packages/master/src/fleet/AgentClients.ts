/**
 * The master's clients for agents: one typed AgentRpcs client per address, made once and kept.
 * A call tries the node's addresses in order and moves on only when an address cannot be
 * reached; the agent's own errors (typed) come back as they are.
 */
import { Errors } from "@mcp/domain"
import { AgentRpcs, Transport } from "@mcp/rpc"
import { Context, Duration, Effect, RcMap } from "effect"

export interface AgentClientSettings {
  readonly ca: string
  readonly token: Transport.ClientOptions["token"]
  readonly clientCert: Transport.ClientOptions["clientCert"]
}
export const AgentClientSettings = Context.GenericTag<AgentClientSettings>("@mcp/master/AgentClientSettings")

const isTransportFailure = (e: unknown): boolean => typeof e === "object" && e !== null && "_tag" in e && e._tag === "RpcClientError"

export class AgentClients extends Effect.Service<AgentClients>()("@mcp/master/AgentClients", {
  scoped: Effect.gen(function* () {
    const settings = yield* AgentClientSettings

    const makeFor = (address: string) =>
      Transport.makeClient(AgentRpcs, {
        url: `https://${address}/agent`,
        ca: settings.ca,
        token: settings.token,
        ...(settings.clientCert === undefined ? {} : { clientCert: settings.clientCert })
      })

    // Clients live as long as the service, not the call that first needed them: an idle one is
    // kept, so releasing it right after the lookup leaves it for the next call.
    const clients = yield* RcMap.make({ lookup: makeFor, idleTimeToLive: Duration.infinity })

    const client = (address: string) =>
      Effect.scoped(RcMap.get(clients, address)).pipe(
        // Making a client cannot fail, only die; a death is not kept: the next call makes it again.
        Effect.tapDefect(() => RcMap.invalidate(clients, address))
      )

    /**
     * Runs `f` against the node's addresses in order until one is reachable. When none is, the
     * result is NodeUnreachable naming every address and why.
     */
    const call = <A, E>(
      node: string,
      addresses: ReadonlyArray<string>,
      f: (agent: Effect.Effect.Success<ReturnType<typeof makeFor>>) => Effect.Effect<A, E>
    ): Effect.Effect<A, Exclude<E, { readonly _tag: "RpcClientError" }> | Errors.NodeUnreachable> => {
      const attempt = (i: number, reasons: ReadonlyArray<string>): Effect.Effect<A, Exclude<E, { readonly _tag: "RpcClientError" }> | Errors.NodeUnreachable> => {
        const address = addresses[i]
        if (address === undefined) {
          return Effect.fail(new Errors.NodeUnreachable({ node, addresses: [...addresses], reason: reasons.join("; ") || "no address" }))
        }
        return Effect.flatMap(client(address), f).pipe(
          Effect.catchAll((e) =>
            isTransportFailure(e)
              ? attempt(i + 1, [...reasons, `${address}: ${(e as { message: string }).message}`])
              : Effect.fail(e as Exclude<E, { readonly _tag: "RpcClientError" }>)
          )
        )
      }
      return attempt(0, [])
    }

    return { client, call } as const
  })
}) {}


/**
 * The master's clients for agents: one typed AgentRpcs client per node and address, made once
 * and kept. A call tries the node's addresses in order and moves on only when an address cannot
 * be reached; the agent's own errors (typed) come back as they are.
 *
 * Each client expects the node's name in the agent's certificate (Transport's `expectedName`):
 * the master's system token and its orders go only to that node, not to whatever else the CA
 * signed that answers at an address someone registered. A certificate that names another node
 * counts as an address that cannot be reached, with the reason saying so.
 */
import { Errors } from "@mcp/domain"
import * as ServerIdentity from "@mcp/rpc/ServerIdentity"
import * as Transport from "@mcp/rpc/Transport"
import { AgentRpcs } from "@mcp/rpc/Contracts"
import { Context, Data, Duration, Effect, RcMap } from "effect"

export interface AgentClientSettings {
  readonly ca: string
  readonly token: Transport.ClientOptions["token"]
  readonly clientCert: Transport.ClientOptions["clientCert"]
}
export const AgentClientSettings = Context.GenericTag<AgentClientSettings>("@mcp/master/AgentClientSettings")

const isTransportFailure = (e: unknown): boolean => typeof e === "object" && e !== null && "_tag" in e && e._tag === "RpcClientError"

/** Why an address failed: the identity mismatch (it names the fix) rather than "Failed to send HTTP request". */
export const reasonOf = (e: unknown): string => ServerIdentity.findMismatch(e)?.message ?? (e as { message: string }).message

/** One client per (node, address): the same address under another node's name is another client, checked for that name. */
interface Target {
  readonly node: string
  readonly address: string
}

export class AgentClients extends Effect.Service<AgentClients>()("@mcp/master/AgentClients", {
  scoped: Effect.gen(function* () {
    const settings = yield* AgentClientSettings

    const makeFor = ({ address, node }: Target) =>
      Transport.makeClient(AgentRpcs, {
        url: `https://${address}/agent`,
        ca: settings.ca,
        token: settings.token,
        expectedName: node,
        ...(settings.clientCert === undefined ? {} : { clientCert: settings.clientCert })
      })

    // Clients live as long as the service, not the call that first needed them: an idle one is
    // kept, so releasing it right after the lookup leaves it for the next call.
    const clients = yield* RcMap.make({ lookup: makeFor, idleTimeToLive: Duration.infinity })

    /** The client for `node` at `address`; it talks only to a server whose certificate names `node`. */
    const client = (node: string, address: string) => {
      const key = Data.struct({ node, address })
      return Effect.scoped(RcMap.get(clients, key)).pipe(
        // Making a client cannot fail, only die; a death is not kept: the next call makes it again.
        Effect.tapDefect(() => RcMap.invalidate(clients, key))
      )
    }

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
        return Effect.flatMap(client(node, address), f).pipe(
          Effect.catchAll((e) =>
            isTransportFailure(e)
              ? attempt(i + 1, [...reasons, `${address}: ${reasonOf(e)}`])
              : Effect.fail(e as Exclude<E, { readonly _tag: "RpcClientError" }>)
          )
        )
      }
      return attempt(0, [])
    }

    return { client, call } as const
  })
}) {}


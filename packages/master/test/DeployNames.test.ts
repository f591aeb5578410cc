/**
 * A deploy's service name comes from the network inside a raw definition; it is decoded before
 * the service's actor is looked up, so a name with `../` or control characters is refused as
 * InvalidDefinition naming the field and no actor is ever created for it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { Effect, Layer, Stream } from "effect"
import { handlers } from "../src/daemon/handlers/ServiceOperations.js"
import { MasterDb } from "../src/db/MasterDb.js"
import { AgentClients } from "../src/fleet/AgentClients.js"
import { NodeSupervisors } from "../src/nodes/NodeSupervisors.js"
import { CrossNodeSaga } from "../src/services/CrossNodeSaga.js"
import { ServiceCoordinators } from "../src/services/ServiceCoordinators.js"

// Nothing but the coordinators is reached when the name is refused; the rest must not be used.
const unused = <A>(what: string) => new Proxy({}, { get: () => { throw new Error(`not used by this test: ${what}`) } }) as A
const deps = Layer.mergeAll(
  ServiceCoordinators.Default,
  Layer.succeed(MasterDb, unused<MasterDb>("MasterDb")),
  Layer.succeed(AgentClients, unused<AgentClients>("AgentClients")),
  Layer.succeed(NodeSupervisors, unused<NodeSupervisors>("NodeSupervisors")),
  Layer.succeed(CrossNodeSaga, unused<CrossNodeSaga["Type"]>("CrossNodeSaga"))
)

const definition = (name: string) => ({ name, components: [{ name: "app", image: "registry.example/app:v1.0.0" }] })

describe("master deploy: names are validated before any actor exists", () => {
  for (const name of ["../etc", "web\u001b[2J", "a/b", ""]) {
    it.effect(`refuses ${JSON.stringify(name)}`, () =>
      Effect.gen(function* () {
        const h = yield* handlers({ internalZone: "internal.test" })
        const coordinators = yield* ServiceCoordinators
        const error = yield* Stream.runDrain(h.Deploy({ definition: definition(name), dryRun: false })).pipe(Effect.flip)
        expect(error).toBeInstanceOf(Errors.InvalidDefinition)
        const invalid = error as Errors.InvalidDefinition
        expect(invalid.problems.map((p) => p.path)).toContain("name")
        expect(yield* coordinators.stats).toEqual([])
      }).pipe(Effect.provide(deps)))
  }
})

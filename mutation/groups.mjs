// The core modules under mutation testing, in groups that each run only the test projects that
// exercise them (a mutant is run against the tests that cover it; a group keeps the dry run and
// the sandbox small). `npm run mutate` runs every group; `npm run mutate -- saga` runs one.
export const groups = {
  // Schemas and pure logic: definitions and their validation, health state machine, placement.
  domain: {
    mutate: ["packages/domain/src/**/*.ts", "!packages/domain/src/index.ts"],
    projects: ["domain", "cli"]
  },
  // The agent's lifecycle of a service: the deploy saga, its steps and journal, the health gate,
  // the port allocator, the container plan, service operations, status and start-up recovery;
  // and the saga runner and SQL journal the agent and the master share.
  saga: {
    mutate: ["packages/agent/src/lifecycle/**/*.ts", "packages/rpc/src/Saga.ts", "packages/rpc/src/SagaJournal.ts"],
    projects: ["agent", "rpc", "master"]
  },
  // Who may call what: the auth middleware and the authenticators behind it.
  auth: {
    mutate: ["packages/rpc/src/AuthMiddleware.ts", "packages/rpc/src/TokenFileAuthenticator.ts", "packages/rpc/src/Authenticator.ts"],
    projects: ["rpc"]
  },
  // The runtime the daemons share: keyed actors (one fiber per service) and fatal failures.
  runtime: {
    mutate: ["packages/rpc/src/KeyedActors.ts", "packages/rpc/src/Failures.ts"],
    projects: ["rpc"]
  },
  // The master's per-node fibers: heartbeat deadlines, probes, health, restarts.
  supervision: {
    mutate: ["packages/master/src/nodes/NodeSupervisors.ts"],
    projects: ["master"]
  }
}

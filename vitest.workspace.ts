// One vitest project per package plus the cross-package integration tests in test/. Each project
// runs with its own temporary directory, removed at the end (test/support/TempRoot.ts).
import { fileURLToPath } from "node:url"
import { defineWorkspace } from "vitest/config"

const globalSetup = [fileURLToPath(new URL("./test/support/TempRoot.ts", import.meta.url))]

export default defineWorkspace([
  { test: { name: "domain", root: "packages/domain", include: ["test/**/*.test.ts"], globalSetup } },
  { test: { name: "rpc", root: "packages/rpc", include: ["test/**/*.test.ts"], globalSetup } },
  { test: { name: "agent", root: "packages/agent", include: ["test/**/*.test.ts"], globalSetup } },
  { test: { name: "master", root: "packages/master", include: ["test/**/*.test.ts"], globalSetup } },
  { test: { name: "cli", root: "packages/cli", include: ["test/**/*.test.ts"], globalSetup } },
  {
    test: {
      name: "integration",
      root: "test",
      include: ["**/*.test.ts"],
      exclude: ["**/node_modules/**", "Chaos.test.ts"],
      // The binaries the tests start run the bundles, built first if need be (test/support/Bundles.ts).
      globalSetup: [...globalSetup, fileURLToPath(new URL("./test/support/Bundles.ts", import.meta.url))],
      testTimeout: 120_000,
      hookTimeout: 120_000
    }
  },
  {
    // The chaos scenarios judge timing (request loops, heartbeats): `npm test` runs them alone,
    // after every other project, so no other test's load is taken for a fault's.
    test: {
      name: "chaos",
      root: "test",
      include: ["Chaos.test.ts"],
      globalSetup: [...globalSetup, fileURLToPath(new URL("./test/support/Bundles.ts", import.meta.url))],
      testTimeout: 600_000,
      hookTimeout: 300_000
    }
  }
])

// One vitest project per package plus the cross-package integration tests in test/.
import { defineWorkspace } from "vitest/config"

export default defineWorkspace([
  { test: { name: "domain", root: "packages/domain", include: ["test/**/*.test.ts"] } },
  { test: { name: "rpc", root: "packages/rpc", include: ["test/**/*.test.ts"] } },
  { test: { name: "agent", root: "packages/agent", include: ["test/**/*.test.ts"] } },
  { test: { name: "master", root: "packages/master", include: ["test/**/*.test.ts"] } },
  { test: { name: "cli", root: "packages/cli", include: ["test/**/*.test.ts"] } },
  { test: { name: "integration", root: "test", include: ["**/*.test.ts"], testTimeout: 120_000, hookTimeout: 120_000 } }
])

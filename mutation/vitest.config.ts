// The vitest configuration Stryker runs: only the projects of the group under mutation (the
// root workspace would also start the integration tests, whose daemons run in child processes
// that never see the active mutant).
import { dirname, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"
import { groups } from "./groups.mjs"

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..")

const all = {
  domain: { name: "domain", root: resolve(repo, "packages/domain"), include: ["test/**/*.test.ts"] },
  rpc: { name: "rpc", root: resolve(repo, "packages/rpc"), include: ["test/**/*.test.ts"] },
  agent: { name: "agent", root: resolve(repo, "packages/agent"), include: ["test/**/*.test.ts"] },
  master: { name: "master", root: resolve(repo, "packages/master"), include: ["test/**/*.test.ts"] },
  cli: { name: "cli", root: resolve(repo, "packages/cli"), include: ["test/**/*.test.ts"] }
} as const

const group = (groups as Record<string, { projects: ReadonlyArray<keyof typeof all> }>)[process.env["MCP_MUTATE_GROUP"] ?? "domain"]!

// Stryker copies the repository into a sandbox and links node_modules from the original, so the
// workspace links (@mcp/*) would load the unmutated packages: point them at the sandbox's sources.
const alias = [
  { find: /^@mcp\/(domain|rpc|cli)$/, replacement: `${repo}/packages/$1/src/index.ts` },
  { find: /^@mcp\/(domain|rpc|agent|master|cli)\/(.+)$/, replacement: `${repo}/packages/$1/src/$2.ts` }
]

// As in the root workspace: one temporary directory for the run, removed at its end (thousands
// of mutant runs would otherwise leave each test's scratch directories in /tmp).
const globalSetup = [resolve(repo, "test/support/TempRoot.ts")]

export default defineConfig({
  test: { projects: group.projects.map((p) => ({ extends: false, resolve: { alias }, test: { ...all[p], globalSetup } })) }
})

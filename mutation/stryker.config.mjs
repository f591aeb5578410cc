// StrykerJS over MCP's core modules, one group per run (see groups.mjs). Run through
// `npm run mutate [group...]` (mutation/run.mjs), which sets MCP_MUTATE_GROUP for each group.
import { groups } from "./groups.mjs"

const name = process.env.MCP_MUTATE_GROUP ?? "domain"
const group = groups[name]
if (group === undefined) throw new Error(`unknown mutation group ${name}; one of: ${Object.keys(groups).join(", ")}`)

export default {
  packageManager: "npm",
  testRunner: "vitest",
  vitest: { configFile: `mutation/vitest.config.ts`, related: false },
  checkers: ["typescript"],
  tsconfigFile: "mutation/tsconfig.json",
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  coverageAnalysis: "perTest",
  // Mutants in code that runs when a module loads (schema literals, constants) would each rerun
  // every test of the group; they are left out of the score and counted as ignored in the report.
  ignoreStatic: true,
  mutate: group.mutate,
  // The sandbox needs the workspace links and the fixtures; build output and local state it does not.
  ignorePatterns: ["dist", ".mcp-local", "reports", "bench/out", "coverage"],
  // Two checkers and two test runners; once every mutant is checked, four test runners.
  concurrency: 4,
  timeoutMS: 20_000,
  timeoutFactor: 2,
  reporters: ["clear-text", "progress", "html", "json"],
  htmlReporter: { fileName: `reports/mutation/${name}.html` },
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  thresholds: { high: 90, low: 80, break: null },
  tempDirName: ".stryker-tmp",
  cleanTempDir: "always"
}

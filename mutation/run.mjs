// `npm run mutate [group...]`: runs StrykerJS once per group (all groups by default) and prints
// the mutation score of each mutated file, with the mutants that survived, from the JSON reports.
//
// MCP_SAGA_RUNS and the other property knobs are lowered for the run: a surviving mutant runs the
// whole property, and the score is about which behaviours the tests pin down, not about the long
// tails the default run count explores.
import { spawnSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { dirname, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { groups } from "./groups.mjs"

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const asked = process.argv.slice(2)
for (const name of asked) {
  if (!(name in groups)) {
    console.error(`mutate: unknown group ${name}; one of: ${Object.keys(groups).join(", ")}`)
    process.exit(2)
  }
}
const chosen = asked.length > 0 ? asked : Object.keys(groups)

const env = {
  ...process.env,
  MCP_SAGA_RUNS: process.env.MCP_SAGA_RUNS ?? "60",
  MCP_EDGE_SAGA_RUNS: process.env.MCP_EDGE_SAGA_RUNS ?? "40",
  MCP_EDGE_RUNS: process.env.MCP_EDGE_RUNS ?? "40"
}

const detected = (s) => s === "Killed" || s === "Timeout"
const counted = (s) => detected(s) || s === "Survived" || s === "NoCoverage"

let failed = false
const rows = []
for (const name of chosen) {
  const started = Date.now()
  console.log(`\n==> mutation group ${name}: ${groups[name].mutate.join(" ")}`)
  const run = spawnSync("npx", ["stryker", "run", "mutation/stryker.config.mjs"], {
    cwd: repo,
    stdio: "inherit",
    env: { ...env, MCP_MUTATE_GROUP: name }
  })
  if (run.status !== 0) {
    console.error(`mutate: stryker failed for group ${name} (exit ${run.status})`)
    failed = true
    continue
  }
  const report = JSON.parse(readFileSync(resolve(repo, `reports/mutation/${name}.json`), "utf8"))
  for (const [file, { mutants }] of Object.entries(report.files)) {
    const valid = mutants.filter((m) => counted(m.status))
    const killed = valid.filter((m) => detected(m.status)).length
    rows.push({ group: name, file: relative(repo, resolve(repo, file)), killed, valid: valid.length, survivors: valid.filter((m) => !detected(m.status)) })
  }
  console.log(`==> group ${name} took ${((Date.now() - started) / 1000).toFixed(0)} s`)
}

console.log("\nMutation score per file (killed + timed out / valid mutants; compile errors excluded):\n")
for (const r of rows) {
  const score = r.valid === 0 ? "n/a" : `${((100 * r.killed) / r.valid).toFixed(1)}%`
  console.log(`${score.padStart(7)}  ${String(r.killed).padStart(4)}/${String(r.valid).padEnd(4)} ${r.group.padEnd(12)} ${r.file}`)
}
const totalKilled = rows.reduce((n, r) => n + r.killed, 0)
const totalValid = rows.reduce((n, r) => n + r.valid, 0)
console.log(`\n${totalValid === 0 ? "n/a" : ((100 * totalKilled) / totalValid).toFixed(1) + "%"} overall (${totalKilled}/${totalValid}); HTML reports in reports/mutation/`)
if (process.env.MCP_MUTATE_SURVIVORS !== undefined) {
  for (const r of rows) {
    for (const m of r.survivors) {
      console.log(`${m.status.padEnd(10)} ${r.file}:${m.location.start.line}:${m.location.start.column} ${m.mutatorName}: ${(m.replacement ?? "").replace(/\s+/g, " ").slice(0, 120)}`)
    }
  }
}
process.exit(failed ? 1 : 0)

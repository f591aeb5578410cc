#!/usr/bin/env node
/**
 * `npm run build`: bundles the three binaries with esbuild into dist/ (gitignored), so they start
 * without tsx or thousands of module files:
 *
 *   dist/mcp.mjs, dist/mcp-agent.mjs, dist/mcp-master.mjs   (+ dist/chunks/*.mjs, loaded lazily)
 *
 * ESM, platform node, target node20, code splitting: what a command or an adapter loads with a
 * dynamic import() is its own chunk, read only when used. Baked in with `define`: the version
 * (package.json), the git commit ("unknown" outside a checkout) and the protocol version
 * (packages/rpc/src/Protocol.ts). Native modules (any package holding a .node file or a
 * binding.gyp, e.g. better-sqlite3) stay external and load from node_modules at run time.
 *
 * packages/<pkg>/bin/<name>.js run these when dist/ holds them, the sources through tsx otherwise
 * or with MCP_FROM_SOURCE=1.
 *
 *   node scripts/build.mjs [--metafile]   (--metafile writes dist/meta.json for size analysis)
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { buildInfo } from "./build-info.mjs"

const repo = fileURLToPath(new URL("..", import.meta.url))
const outdir = join(repo, "dist")
const require = createRequire(import.meta.url)

let esbuild
try {
  esbuild = await import("esbuild")
} catch {
  console.error("build: esbuild is not installed; run npm install (it comes with tsx), then npm run build")
  process.exit(1)
}

const { version, commit, protocol } = buildInfo()

/** Packages with native code (a .node file or binding.gyp, at most 3 levels down): kept external. */
const nativeCache = new Map()
const hasNative = (dir, depth = 0) => {
  let entries
  try {
    entries = readdirSync(dir, { withFileTypes: true })
  } catch {
    return false
  }
  for (const e of entries) {
    if (e.isFile() && (e.name.endsWith(".node") || e.name === "binding.gyp")) return true
    if (e.isDirectory() && depth < 3 && e.name !== "node_modules" && !e.name.startsWith(".") && hasNative(join(dir, e.name), depth + 1)) return true
  }
  return false
}
const packageName = (path) => (path.startsWith("@") ? path.split("/").slice(0, 2).join("/") : path.split("/")[0])
const nativeExternals = {
  name: "native-externals",
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith("node:")) return undefined
      const name = packageName(args.path)
      if (name.startsWith("@mcp/")) return undefined
      let native = nativeCache.get(name)
      if (native === undefined) {
        let root
        try {
          root = dirname(require.resolve(`${name}/package.json`, { paths: [args.resolveDir] }))
        } catch {
          root = undefined
        }
        native = root !== undefined && hasNative(root)
        nativeCache.set(name, native)
      }
      return native ? { path: args.path, external: true } : undefined
    })
  }
}

/**
 * Dependencies read only on paths most runs never take, loaded on first use instead of at
 * start: each is bundled on its own into dist/lazy/<name>.cjs, and importers get a stub with
 * the names they use that require()s it then. undici: only for an identity service
 * (identity_url) in the daemons; yaml/toml/ini: @effect/cli's config-file parsers, which mcp
 * does not use. Together about 1.3 MB of JavaScript that `mcp ps` would otherwise parse.
 */
const lazyPackages = {
  undici: { functions: ["getGlobalDispatcher"], classes: ["Agent"] },
  yaml: { functions: ["parse"], classes: [] },
  toml: { functions: ["parse"], classes: [] },
  ini: { functions: ["parse"], classes: [] }
}
const lazyStubs = {
  name: "lazy-packages",
  setup(build) {
    build.onResolve({ filter: new RegExp(`^(${Object.keys(lazyPackages).join("|")})$`) }, (args) => ({ path: args.path, namespace: "lazy" }))
    build.onLoad({ filter: /.*/, namespace: "lazy" }, (args) => {
      const { functions, classes } = lazyPackages[args.path]
      const file = JSON.stringify(`${args.path}.cjs`)
      return {
        loader: "js",
        contents: [
          `import { createRequire } from "node:module"`,
          // Stubs land in dist/chunks/<binary>/; dist/lazy/ is two levels up.
          `const base = new URL(import.meta.url.includes("/chunks/") ? "../../lazy/" : "./lazy/", import.meta.url)`,
          `let loaded`,
          `const load = () => (loaded ??= createRequire(base)("./" + ${file}))`,
          ...functions.map((f) => `export const ${f} = (...args) => load().${f}(...args)`),
          ...classes.map((c) => `export const ${c} = function (...args) { return new (load().${c})(...args) }`),
          `export default new Proxy({}, { get: (_, key) => load()[key] })`
        ].join("\n")
      }
    })
  }
}

const entryPoints = {
  "mcp": join(repo, "packages/cli/src/main.ts"),
  "mcp-agent": join(repo, "packages/agent/src/main.ts"),
  "mcp-master": join(repo, "packages/master/src/main.ts")
}

const options = {
  outdir,
  outExtension: { ".js": ".mjs" },
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  // The packages' "exports" point at .ts sources; esbuild reads them as they are.
  conditions: ["node", "import"],
  mainFields: ["module", "main"],
  minify: true,
  keepNames: true,
  legalComments: "none",
  sourcemap: false,
  metafile: true,
  logLevel: "warning",
  define: {
    __MCP_VERSION__: JSON.stringify(version),
    __MCP_COMMIT__: JSON.stringify(commit),
    __MCP_PROTOCOL__: JSON.stringify(protocol)
  },
  // Bundled CommonJS dependencies call require(); give ESM output one, plus __dirname/__filename.
  banner: {
    js: [
      "import { createRequire as __mcpCreateRequire } from \"node:module\";",
      "import { fileURLToPath as __mcpFileURLToPath } from \"node:url\";",
      "import { dirname as __mcpDirname } from \"node:path\";",
      "const require = __mcpCreateRequire(import.meta.url);",
      "const __filename = __mcpFileURLToPath(import.meta.url);",
      "const __dirname = __mcpDirname(__filename);"
    ].join("\n")
  },
  plugins: [lazyStubs, nativeExternals]
}

const started = performance.now()
// Only what this script writes: dist/test holds tsc's output for test/ (tsconfig there).
for (const f of ["chunks", "lazy", "BUILD", "meta.json", ...Object.keys(entryPoints).map((n) => `${n}.mjs`)]) rmSync(join(outdir, f), { recursive: true, force: true })
// One build per binary: chunks shared between binaries would make the CLI read the daemons' code.
const results = await Promise.all(Object.entries(entryPoints).map(([name, entry]) =>
  esbuild.build({ ...options, entryPoints: { [name]: entry }, chunkNames: `chunks/${name}/[name]-[hash]` })
))
await esbuild.build({
  entryPoints: Object.fromEntries(Object.keys(lazyPackages).map((name) => [name, require.resolve(name)])),
  outdir: join(outdir, "lazy"),
  outExtension: { ".js": ".cjs" },
  bundle: true,
  format: "cjs",
  platform: "node",
  target: "node20",
  legalComments: "none",
  logLevel: "warning"
})
const result = { metafile: Object.fromEntries(Object.keys(entryPoints).map((name, i) => [name, results[i].metafile])) }
if (process.argv.includes("--metafile")) writeFileSync(join(outdir, "meta.json"), JSON.stringify(result.metafile))
// What the bins check to prefer dist/ over the sources.
writeFileSync(join(outdir, "BUILD"), JSON.stringify({ version, commit, protocol, builtAt: new Date().toISOString() }) + "\n")

const externals = [...nativeCache].filter(([, native]) => native).map(([name]) => name)
const size = (f) => (existsSync(f) ? `${(statSync(f).size / 1024).toFixed(0)} KiB` : "-")
console.log(`built ${version} (commit ${commit}, protocol ${protocol}) in ${((performance.now() - started) / 1000).toFixed(1)} s`)
for (const name of Object.keys(entryPoints)) console.log(`  dist/${name}.mjs  ${size(join(outdir, `${name}.mjs`))}`)
for (const name of Object.keys(entryPoints)) {
  const dir = join(outdir, "chunks", name)
  if (existsSync(dir)) console.log(`  dist/chunks/${name}/  ${readdirSync(dir).length} lazily loaded chunks`)
}
console.log(`  external (native): ${externals.join(", ") || "none"}`)

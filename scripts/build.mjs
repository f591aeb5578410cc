#!/usr/bin/env node
/**
 * `npm run build`: bundles the three binaries with esbuild into dist/ (gitignored), so they start
 * without tsx or thousands of module files:
 *
 *   dist/mcp.mjs, dist/mcp-agent.mjs, dist/mcp-master.mjs   (+ dist/chunks/*.mjs, loaded lazily)
 *   dist/mcp.cjs, dist/mcp.cjs.cache   the CLI's commands as one CommonJS file and its V8 code
 *                                      cache, which dist/mcp.mjs runs (see codeCached below)
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
 *   node scripts/build.mjs [--metafile] [--outdir DIR] [--readable]
 *
 * --metafile writes dist/meta.json for size analysis; --outdir builds elsewhere; --readable keeps
 * the daemons' bundles in the lines and layout esbuild prints (no whitespace minification), for
 * CPU profiles whose positions can be read (bench/heartbeats.ts --profile). Rebuild without it
 * after: the daemons' chunks are larger so.
 */
import { spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { createRequire } from "node:module"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { buildInfo } from "./build-info.mjs"

const repo = fileURLToPath(new URL("..", import.meta.url))
// --outdir: a build elsewhere than dist/ (a release of another version, made beside the one the
// tests and the bins run from).
const outdirIndex = process.argv.indexOf("--outdir")
const outdir = outdirIndex >= 0 && process.argv[outdirIndex + 1] !== undefined ? resolve(process.argv[outdirIndex + 1]) : join(repo, "dist")
const require = createRequire(import.meta.url)
const readable = process.argv.includes("--readable")

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
      // ESM: stubs land in dist/ or dist/chunks/<binary>/ (dist/lazy/ is then two levels up).
      // CommonJS (the CLI, codeCached below): one file in dist/, __dirname; a path esbuild leaves alone.
      const load = build.initialOptions.format === "cjs"
        ? [`const load = () => (loaded ??= require(require("node:path").join(__dirname, "lazy", ${file})))`]
        : [
            `import { createRequire } from "node:module"`,
            `const base = new URL(import.meta.url.includes("/chunks/") ? "../../lazy/" : "./lazy/", import.meta.url)`,
            `const load = () => (loaded ??= createRequire(base)("./" + ${file}))`
          ]
      return {
        loader: "js",
        contents: [
          `let loaded`,
          ...load,
          ...functions.map((f) => `export const ${f} = (...args) => load().${f}(...args)`),
          ...classes.map((c) => `export const ${c} = function (...args) { return new (load().${c})(...args) }`),
          `export default new Proxy({}, { get: (_, key) => load()[key] })`
        ].join("\n")
      }
    })
  }
}

/**
 * docker-modem (under dockerode) requires ssh2 at its top, for engines reached over ssh://. The
 * agent only talks to the engine's unix socket (DockerRuntime forces protocol "http"), so ssh2
 * never runs, yet loading it costs an idle agent about 5 MiB (its poly1305 WebAssembly memory, a
 * native binding) and the release a native package. The bundles get a stand-in whose Client
 * refuses with a clear error, should an ssh:// engine ever be configured.
 */
const withoutSsh2 = {
  name: "without-ssh2",
  setup(build) {
    build.onResolve({ filter: /^ssh2$/ }, (args) => ({ path: args.path, namespace: "no-ssh2" }))
    build.onLoad({ filter: /.*/, namespace: "no-ssh2" }, () => ({
      loader: "js",
      contents: [
        `class Client {`,
        `  constructor() { throw new Error("engines reached over ssh:// are not supported: give [runtime] socket, the engine's unix socket") }`,
        `}`,
        `module.exports = { Client }`
      ].join("\n")
    }))
  }
}

/**
 * dockerode requires its BuildKit support at its top: lib/session.js (@grpc/grpc-js and
 * @grpc/proto-loader, with protobufjs) for buildImage({ version: "2" }), and lib/buildkit.js
 * (protobufjs) for docker.followProgress. The agent builds no images and follows pulls with
 * docker.modem.followProgress, so neither runs, yet loading them cost an idle agent about 400 KB
 * of JavaScript. (In a bundle the session could not work anyway: it reads proto/auth.proto beside
 * its own file.) The bundles get stand-ins that fail with a clear error if ever called.
 */
const withoutBuildKit = {
  name: "without-buildkit",
  setup(build) {
    build.onResolve({ filter: /^\.\/(session|buildkit)$/ }, (args) =>
      /[\\/]node_modules[\\/]dockerode[\\/]lib$/.test(args.resolveDir) ? { path: args.path.slice(2), namespace: "no-buildkit" } : undefined)
    build.onLoad({ filter: /.*/, namespace: "no-buildkit" }, (args) => {
      const refusal = `new Error("BuildKit (dockerode's ${args.path}) is not part of the MCP bundles: the agent builds no images")`
      return {
        loader: "js",
        contents: args.path === "session"
          ? `module.exports = function withSession(docker, auth, handler) { handler(${refusal}, null, () => undefined) }`
          : `module.exports = { followProgress() { throw ${refusal} } }`
      }
    })
  }
}

const entryPoints = {
  "mcp": join(repo, "packages/cli/src/main.ts"),
  "mcp-agent": join(repo, "packages/agent/src/main.ts"),
  "mcp-master": join(repo, "packages/master/src/main.ts")
}

/**
 * Every MCP client and server speaks ndjson (rpc/src/Transport.ts, TransportClient.ts), never
 * MessagePack, but @effect/rpc's RpcSerialization imports msgpackr for its MessagePack layer, and
 * msgpackr probes for its optional native decoder (msgpackr-extract: libc detection, file reads,
 * a native addon loaded into the process) as it loads. In every bundle msgpackr is an empty
 * module: nothing of it runs, and the release ships no msgpackr-extract. A MessagePack layer used
 * anyway would fail at once ("Unpackr is not a constructor"), not quietly.
 */
const withoutMsgpackr = {
  name: "without-msgpackr",
  setup(build) {
    build.onResolve({ filter: /^msgpackr(-extract)?$/ }, (args) => ({ path: args.path, namespace: "without-msgpackr" }))
    build.onLoad({ filter: /.*/, namespace: "without-msgpackr" }, () => ({ loader: "js", contents: "module.exports = {}" }))
  }
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
  // Names are left as written (no minifyIdentifiers), so stack traces and anything that reads a
  // function's or class's name see the source's; and no keepNames, which restores minified names
  // by calling __name() (Object.defineProperty) on every function as it is created: closures
  // made on every call (Effect's and Schema's combinators on a request's path) paid it each time.
  // In a CPU profile of a master under bench/heartbeats.ts: about 6% of its CPU per heartbeat in
  // __name alone; and its Ps fan-out over 100 agents x 30 services answered in 1.05 s, not 1.40.
  minifyWhitespace: !readable,
  minifySyntax: true,
  minifyIdentifiers: false,
  keepNames: false,
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
  plugins: [withoutSsh2, withoutBuildKit, withoutMsgpackr, lazyStubs, nativeExternals]
}

/**
 * The CLI's command tree runs from a V8 code cache (scripts/code-cache.mjs): a CLI starts for
 * every command, and compiling its bundle was a quarter of `mcp ps`. dist/mcp.mjs stays the
 * entry point: packages/cli/src/main.ts, which answers --version itself and otherwise imports
 * commands/Root.ts; that import becomes runCached(), which runs dist/mcp.cjs, Root.ts and all it
 * imports as one CommonJS file (vm.Script takes a cache; ES modules have none in Node 20), its
 * lazily loaded command modules inside as functions called on first import() instead of files.
 * dist/mcp.cjs.cache is the cache, written by a warm run at the end of the build. The daemons
 * start once: plain ESM.
 */
const codeCached = { mcp: { tree: join(repo, "packages/cli/src/commands/Root.ts"), exports: ["run"] } }
/**
 * The warm run whose compiled functions the cache keeps (see writeCodeCache): `mcp ps` against a
 * master that is not there (a closed port; the CA file is never parsed, as the connection fails
 * first), which runs what every fleet command runs: parsing, the CLI config, the RPC client and
 * an error's report. It must end with that error (exit 1), or the run did not go where it should.
 * Measured against a cache of `mcp --help`: about 5 ms less CPU for each `mcp ps`.
 */
const warmRun = {
  mcp: (dir) => {
    writeFileSync(join(dir, "ca.crt"), "never read: the connection is refused first\n")
    writeFileSync(join(dir, "token"), "warm-run\n", { mode: 0o600 })
    writeFileSync(join(dir, "mcp.toml"), `master = ["127.0.0.1:1"]\nca = "ca.crt"\ntoken_file = "token"\n`)
    return { args: ["ps", "--config", join(dir, "mcp.toml")], exit: 1, output: /cannot reach the master/ }
  }
}

/** In the entry point's bundle, its import of the command tree runs the cached bundle instead. */
const cachedTree = (name) => ({
  name: "cached-tree",
  setup(build) {
    const { tree, exports } = codeCached[name]
    build.onResolve({ filter: /.*/ }, (args) => {
      if (args.kind !== "dynamic-import" || args.resolveDir === "" || join(args.resolveDir, args.path.replace(/\.js$/, ".ts")) !== tree) return undefined
      return { path: name, namespace: "cached-tree" }
    })
    build.onLoad({ filter: /.*/, namespace: "cached-tree" }, () => ({
      loader: "js",
      resolveDir: repo,
      contents: [
        `import { runCached } from ${JSON.stringify(join(repo, "scripts/code-cache.mjs"))}`,
        `const tree = runCached(import.meta.url, ${JSON.stringify(name)})`,
        ...exports.map((e) => `export const ${e} = tree.${e}`)
      ].join("\n")
    }))
  }
})


/**
 * effect's Schema imports fast-check (through effect/FastCheck) for Arbitrary, which derives
 * test data generators from schemas; the CLI never asks for one. In the command tree every
 * module is initialised as a whole when first imported (esbuild wraps them, see cjsOptions), so
 * that import alone set up fast-check's ~220 modules on every command. For the CLI it is an
 * empty module: a generator asked for anyway fails with "... is not a function".
 */
const withoutFastCheck = {
  name: "without-fast-check",
  setup(build) {
    build.onResolve({ filter: /^fast-check$/ }, (args) => ({ path: args.path, namespace: "no-fast-check" }))
    build.onLoad({ filter: /.*/, namespace: "no-fast-check" }, () => ({ loader: "js", contents: "module.exports = {}" }))
  }
}

/**
 * @peculiar/x509 (with asn1js, tsyringe, reflect-metadata: about 0.6 MB) serves only the commands
 * that read or make certificates (ca, token; through @mcp/rpc's Pki). In the command tree it was a
 * quarter of the bundle, which every command paid to read and to load from the code cache. For
 * the CLI it is bundled on its own into dist/lazy/x509.cjs and the tree gets a stand-in that
 * require()s it when first imported: when Pki is initialised, never for ps and the like. Those
 * commands compile it from source (no code cache), a few ms. It stays unminified: asn1js
 * compares class names (constructor.name === "Sequence").
 */
const lazyX509 = {
  name: "lazy-x509",
  setup(build) {
    build.onResolve({ filter: /^@peculiar\/x509$/ }, (args) => ({ path: args.path, namespace: "lazy-x509" }))
    build.onLoad({ filter: /.*/, namespace: "lazy-x509" }, () => ({
      loader: "js",
      contents: `module.exports = require(require("node:path").join(__dirname, "lazy", "x509.cjs"))`
    }))
  }
}

/**
 * `mcp node provision` logs in to nodes with ssh2, which the daemons do without (withoutSsh2).
 * For the CLI it is bundled on its own into dist/lazy/ssh2.cjs, which the tree require()s when
 * the provisioning modules are first imported (only by that command). Its native parts stay out
 * (cpu-features, the sshcrypto binding): ssh2 loads them in try/catch and otherwise uses Node's
 * crypto and its own WebAssembly, so the release carries no native SSH module.
 */
const lazySsh2 = {
  name: "lazy-ssh2",
  setup(build) {
    build.onResolve({ filter: /^ssh2$/ }, (args) => ({ path: args.path, namespace: "lazy-ssh2" }))
    build.onLoad({ filter: /.*/, namespace: "lazy-ssh2" }, () => ({
      loader: "js",
      contents: `module.exports = require(require("node:path").join(__dirname, "lazy", "ssh2.cjs"))`
    }))
  }
}

const cjsOptions = {
  ...options,
  // lazySsh2 before options.plugins: the first plugin to resolve ssh2 wins over withoutSsh2.
  plugins: [withoutFastCheck, lazyX509, lazySsh2, ...options.plugins],
  // Minified names (the daemons' bundles keep theirs), and no keepNames: its __name() call on
  // every function and class was about 80 KiB of the bundle and 140 KiB of its code cache, some
  // 8 ms of CPU per command. Nothing on the command
  // tree reads a function's or class's own name (effect, @effect/*, the sources: identifiers and
  // tags are strings); asn1js does (constructor.name === "Sequence"), and @peculiar/x509 with it
  // is the unminified dist/lazy/x509.cjs (lazyX509 above), so it keeps its names.
  minifyIdentifiers: true,
  keepNames: false,
  outExtension: { ".js": ".cjs" },
  splitting: false,
  format: "cjs",
  // import() of a bundled module becomes a call to its init function, and of a Node built-in a
  // require(): the code runs as a vm.Script, which has no import() of its own. Every module is
  // then wrapped in such a function and runs whole when first imported, so importing a package's
  // index (`from "@effect/platform"`) initialises all it re-exports: the modules on a command's
  // path import by module path (`@effect/platform/HttpClientError`) instead.
  supported: { "dynamic-import": false },
  // CommonJS has require, __filename and __dirname (the code cache entry passes them).
  banner: {}
}

/** Runs the bundle once as the build's warm run, which writes dist/<name>.cjs.cache at exit. */
const writeCodeCache = (name) => {
  const cache = join(outdir, `${name}.cjs.cache`)
  // NODE_OPTIONS may carry V8 flags, and V8 rejects a cache made under other flags than the run's.
  const env = { ...process.env, MCP_BUILD_CODE_CACHE: "1" }
  delete env.NODE_OPTIONS
  const dir = mkdtempSync(join(tmpdir(), "mcp-warm-run-"))
  try {
    const warm = warmRun[name](dir)
    const run = spawnSync(process.execPath, [join(outdir, `${name}.mjs`), ...warm.args], { env, encoding: "utf8" })
    if (run.status !== warm.exit || !warm.output.test(run.stdout + run.stderr) || !existsSync(cache)) {
      console.error(`build: the warm run of ${name} (${warm.args.join(" ")}) exited ${run.status}, expected ${warm.exit} saying ${warm.output}, and ${existsSync(cache) ? "wrote" : "did not write"} ${cache}:\n${run.stdout}${run.stderr}`)
      process.exit(1)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const started = performance.now()
// Only what this script writes: dist/test holds tsc's output for test/ (tsconfig there).
for (const f of ["chunks", "lazy", "BUILD", "meta.json", ...Object.keys(entryPoints).flatMap((n) => [`${n}.mjs`, `${n}.cjs`, `${n}.cjs.cache`])]) rmSync(join(outdir, f), { recursive: true, force: true })
// One build per binary: chunks shared between binaries would make the CLI read the daemons' code.
const results = await Promise.all(Object.entries(entryPoints).map(([name, entry]) =>
  codeCached[name] === undefined
    ? esbuild.build({ ...options, entryPoints: { [name]: entry }, chunkNames: `chunks/${name}/[name]-[hash]` })
    // One file: the entry point finds the cached bundle beside it through import.meta.url.
    : esbuild.build({ ...options, entryPoints: { [name]: entry }, splitting: false, plugins: [cachedTree(name), ...options.plugins] })
))
await Promise.all(Object.entries(codeCached).map(([name, { tree }]) => esbuild.build({ ...cjsOptions, entryPoints: { [name]: tree } })))
await esbuild.build({
  entryPoints: { ...Object.fromEntries(Object.keys(lazyPackages).map((name) => [name, require.resolve(name)])), x509: require.resolve("@peculiar/x509"), ssh2: require.resolve("ssh2") },
  outdir: join(outdir, "lazy"),
  // ssh2's optional native parts (lazySsh2 above).
  external: ["cpu-features", "*.node"],
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
// The warm runs load dist/lazy/ (a command may read a config file parser): after it is built.
for (const name of Object.keys(codeCached)) writeCodeCache(name)
const externals = [...nativeCache].filter(([, native]) => native).map(([name]) => name).sort()
// What the bins check to prefer dist/ over the sources; externals: the native packages the
// bundles require at run time, which scripts/release.mjs ships beside them.
writeFileSync(join(outdir, "BUILD"), JSON.stringify({ version, commit, protocol, externals, builtAt: new Date().toISOString() }) + "\n")
const size = (f) => (existsSync(f) ? `${(statSync(f).size / 1024).toFixed(0)} KiB` : "-")
console.log(`built ${version} (commit ${commit}, protocol ${protocol}) in ${((performance.now() - started) / 1000).toFixed(1)} s`)
for (const name of Object.keys(entryPoints)) {
  console.log(`  dist/${name}.mjs  ${size(join(outdir, `${name}.mjs`))}`)
  if (codeCached[name] !== undefined) console.log(`  dist/${name}.cjs  ${size(join(outdir, `${name}.cjs`))}, code cache dist/${name}.cjs.cache  ${size(join(outdir, `${name}.cjs.cache`))}`)
}
for (const name of Object.keys(entryPoints)) {
  const dir = join(outdir, "chunks", name)
  if (existsSync(dir)) console.log(`  dist/chunks/${name}/  ${readdirSync(dir).length} lazily loaded chunks`)
}
console.log(`  external (native): ${externals.join(", ") || "none"}`)

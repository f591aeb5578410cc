/**
 * Test harness for a real Prometheus (Debian's `prometheus` package): started on 127.0.0.1 with
 * a scrape config for the given HTTPS targets (the platform CA and a bearer token file, as an
 * operator would configure it), queried through its HTTP API.
 */
import { writeFileSync } from "node:fs"
import * as path from "node:path"
import { freeTcpPort, privateDir, requireBinary, startManagedProcess } from "./ManagedProcess.js"

export interface ScrapeTarget {
  /** The job label, e.g. "master". */
  readonly job: string
  /** host:port of the daemon's HTTPS listener. */
  readonly address: string
  /** The CA its certificate chains to. */
  readonly caFile: string
  /** A file holding the token Prometheus sends (authorization.credentials_file). */
  readonly tokenFile: string
}

export interface Prometheus {
  readonly url: string
  /** The samples of an instant query, each with its labels and value. */
  readonly query: (promql: string) => Promise<ReadonlyArray<{ readonly labels: Readonly<Record<string, string>>; readonly value: number }>>
  readonly output: () => string
  readonly dispose: () => Promise<void>
}

const answers = async (url: string) => {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(1000) })
    return r.status === 200
  } catch {
    return false
  }
}

export const startPrometheus = async (targets: ReadonlyArray<ScrapeTarget>, scrapeInterval = "1s"): Promise<Prometheus> => {
  const binary = requireBinary("prometheus", "the metrics tests (a real Prometheus scraping the daemons)", "Install it with: sudo apt-get install -y prometheus (or sudo bash scripts/setup-peers.sh)")
  const dir = privateDir("prometheus")
  const port = await freeTcpPort()
  const config = path.join(dir, "prometheus.yml")
  // JSON is YAML: no YAML library needed for a config this size.
  writeFileSync(config, JSON.stringify({
    global: { scrape_interval: scrapeInterval, scrape_timeout: scrapeInterval },
    scrape_configs: targets.map((t) => ({
      job_name: t.job,
      scheme: "https",
      tls_config: { ca_file: t.caFile },
      authorization: { credentials_file: t.tokenFile },
      static_configs: [{ targets: [t.address] }]
    }))
  }, null, 2))
  const url = `http://127.0.0.1:${port}`
  const proc = await startManagedProcess({
    name: `prometheus (${url})`,
    command: binary,
    args: [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`],
    dir,
    timeoutMs: 30_000,
    ready: { awaiting: `GET ${url}/-/ready to answer 200`, check: () => answers(`${url}/-/ready`), intervalMs: 200 }
  })
  const query = async (promql: string) => {
    const r = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`, { signal: AbortSignal.timeout(5000) })
    const body = await r.json() as { status: string; error?: string; data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } }
    if (body.status !== "success") throw new Error(`prometheus query ${promql} failed: ${body.error ?? JSON.stringify(body)}`)
    return (body.data?.result ?? []).map((s) => ({ labels: s.metric, value: Number(s.value[1]) }))
  }
  return { url, query, output: proc.output, dispose: proc.dispose }
}

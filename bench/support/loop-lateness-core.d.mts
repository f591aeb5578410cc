/** See loop-lateness-core.mjs. */
export declare const reportLoopLateness: (report: (line: string) => void) => void

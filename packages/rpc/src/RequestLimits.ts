/**
 * Checks on an RPC request body before anything decodes it: how many ndjson frames (RPC
 * messages) it carries, and how deeply its JSON nests. One pass over the characters, no
 * recursion and no parsing, so a hostile body costs at most one scan of (at most) 4 MiB.
 */

/**
 * RPC messages one HTTP request may carry. The MCP client sends exactly one request per HTTP
 * request; without a bound one 135 KB body held thousands of calls, all run at once. 64 leaves
 * room for a client that batches while keeping one request's work small.
 */
export const DEFAULT_MAX_MESSAGES_PER_REQUEST = 64

/**
 * How deeply a request's JSON may nest (objects and arrays). The deepest real payload, a
 * service definition inside a Deploy (message, payload, definition, components, a component,
 * routes, a route), nests under 10; 32 leaves room, while thousands of levels would overflow
 * the stack of code that walks the decoded value recursively.
 */
export const DEFAULT_MAX_JSON_DEPTH = 32

export type BodyProblem =
  | { readonly _tag: "TooManyMessages"; readonly limit: number }
  | { readonly _tag: "TooDeep"; readonly limit: number; readonly line: number }

const NEWLINE = 10
const QUOTE = 34
const BACKSLASH = 92
const OPEN_BRACE = 123
const CLOSE_BRACE = 125
const OPEN_BRACKET = 91
const CLOSE_BRACKET = 93

/**
 * The first limit an ndjson body breaks, or undefined. A frame ends at each "\n" (the ndjson
 * parser decodes nothing else), and brackets inside JSON strings do not count toward depth.
 */
export const checkBody = (body: string, limits: { readonly maxMessages: number; readonly maxDepth: number }): BodyProblem | undefined => {
  let frames = 0
  let depth = 0
  let inString = false
  let escaped = false
  for (let i = 0; i < body.length; i++) {
    const c = body.charCodeAt(i)
    if (c === NEWLINE) {
      frames++
      if (frames > limits.maxMessages) return { _tag: "TooManyMessages", limit: limits.maxMessages }
      // A string cannot span frames: each frame starts afresh.
      depth = 0
      inString = false
      escaped = false
    } else if (inString) {
      if (escaped) escaped = false
      else if (c === BACKSLASH) escaped = true
      else if (c === QUOTE) inString = false
    } else if (c === QUOTE) {
      inString = true
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      depth++
      if (depth > limits.maxDepth) return { _tag: "TooDeep", limit: limits.maxDepth, line: frames + 1 }
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--
    }
  }
  return undefined
}

/** What the server answers, with the status: each names the limit and the fix. */
export const describeProblem = (problem: BodyProblem): { readonly status: number; readonly text: string } => {
  switch (problem._tag) {
    case "TooManyMessages":
      return {
        status: 413,
        text: `request carries more than ${problem.limit} RPC messages (ndjson lines), the most one request may carry; nothing in it was run: send the calls in separate requests`
      }
    case "TooDeep":
      return {
        status: 400,
        text: `request nests JSON more than ${problem.limit} levels deep (message ${problem.line}), the most accepted; nothing in it was run: flatten the payload`
      }
  }
}

/**
 * Value parsing helpers for the config loader (src/config/config.ts): durations,
 * booleans, numbers from text, and "did you mean" suggestions.
 */

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|h|m|s)/g
const DURATION_FULL = /^(?:\d+(?:\.\d+)?(?:ms|h|m|s))+$/
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/**
 * `500ms`, `5s`, `1.5s`, `2m`, `1h`, `1m30s` -> milliseconds; a bare number is
 * milliseconds (`250` = 250 ms). Returns undefined when the text is not a
 * non-negative duration.
 */
export function parseDuration (text: string): number | undefined {
  const s = text.trim()
  if (/^\d+(?:\.\d+)?$/.test(s)) return Number(s)
  if (!DURATION_FULL.test(s)) return undefined
  let total = 0
  for (const m of s.matchAll(DURATION_PART)) total += Number(m[1]) * (UNIT_MS[m[2] as string] as number)
  return Number.isFinite(total) ? total : undefined
}

/** 90000 -> `1m30s`, 500 -> `500ms`, 0 -> `0ms`. Inverse of parseDuration for whole milliseconds. */
export function formatDuration (ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return String(ms)
  if (ms === 0) return '0ms'
  let rest = ms
  let out = ''
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    const n = Math.floor(rest / size)
    if (n > 0) { out += `${n}${unit}`; rest -= n * size }
  }
  if (rest > 0) out += `${Number.isInteger(rest) ? rest : Number(rest.toFixed(3))}ms`
  return out
}

const TRUE = new Set(['true', '1', 'yes', 'on'])
const FALSE = new Set(['false', '0', 'no', 'off'])

export function parseBoolean (text: string): boolean | undefined {
  const s = text.trim().toLowerCase()
  if (TRUE.has(s)) return true
  if (FALSE.has(s)) return false
  return undefined
}

export function parseIntStrict (text: string): number | undefined {
  const s = text.trim()
  if (!/^[+-]?\d+$/.test(s)) return undefined
  const n = Number(s)
  return Number.isSafeInteger(n) ? n : undefined
}

export function parseNumberStrict (text: string): number | undefined {
  const s = text.trim()
  if (!/^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$/i.test(s)) return undefined
  const n = Number(s)
  return Number.isFinite(n) ? n : undefined
}

export function levenshtein (a: string, b: string): number {
  if (a === b) return 0
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      cur[j] = Math.min((prev[j] as number) + 1, (cur[j - 1] as number) + 1, (prev[j - 1] as number) + cost)
    }
    prev = cur
  }
  return prev[b.length] as number
}

const normalize = (s: string): string => s.toLowerCase().replace(/[-_]/g, '')

/**
 * The closest candidate to a mistyped name, or undefined. Matches, in order:
 * the same name in another case style (`hub-url` vs `hubUrl`), a small edit
 * distance (typos), then a prefix relation (`heartbeatMs` vs `heartbeat`).
 */
export function suggest (name: string, candidates: Iterable<string>): string | undefined {
  const list = [...candidates]
  const n = normalize(name)
  const same = list.find(c => normalize(c) === n)
  if (same !== undefined) return same
  let best: string | undefined
  let bestD = Infinity
  for (const c of list) {
    const d = levenshtein(n, normalize(c))
    if (d < bestD) { bestD = d; best = c }
  }
  if (best !== undefined && bestD <= Math.max(1, Math.floor(n.length / 3))) return best
  const pre = list.find(c => { const m = normalize(c); return m.length >= 3 && (n.startsWith(m) || m.startsWith(n)) && n.length >= 3 })
  return pre
}

/**
 * The node list's id order, kept between requests (bench/admin-nodes.ts).
 * Sorting 10,000 node ids by string on every page request was most of a
 * page's CPU time. The hub lists its nodes in a stable order (its node map's
 * insertion order), so the sorted permutation stays valid while that sequence
 * of ids is unchanged: checking it is one pass of string equality (the same
 * string objects, so mostly pointer compares), and only a new or removed node
 * costs a sort. Nothing time-based: a page never shows stale values, only the
 * order is reused.
 */
export class NodeOrder {
  #ids: string[] = []
  #perm: Uint32Array = new Uint32Array(0)

  /** Indexes of `ids` in ascending id order (code-unit order, as `<` compares). Do not keep the array. */
  byId (ids: readonly string[]): Uint32Array {
    if (!sameSequence(ids, this.#ids)) {
      this.#ids = ids.slice()
      const perm = new Uint32Array(ids.length)
      for (let i = 0; i < perm.length; i++) perm[i] = i
      perm.sort((a, b) => { const x = ids[a] as string; const y = ids[b] as string; return x < y ? -1 : x > y ? 1 : 0 })
      this.#perm = perm
    }
    return this.#perm
  }
}

function sameSequence (a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

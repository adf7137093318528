/**
 * Run `fn` over `items` with at most `limit` calls in flight, in order of start; stops starting
 * new ones once `stop()` says so. Rejects with the first failure (the calls in flight finish).
 */
export async function eachLimit<T> (items: readonly T[], limit: number, fn: (item: T) => Promise<void>, stop: () => boolean = () => false): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length && !stop()) await fn(items[next++] as T)
  }))
}

#!/usr/bin/env node
// The registry this project is developed against serves only some platforms'
// prebuilt packages, so `npm install` leaves the other platforms' optional
// packages out of package-lock.json, and `npm ci` then refuses the lock as out
// of sync. This adds lock entries (version + os/cpu/libc, no tarball) for every
// optional dependency missing from the lock: npm skips them on non-matching
// platforms and fetches them by version on matching ones.
// Run after any `npm install` that rewrote the lock: node scripts/lock-optional-platforms.mjs
import { readFileSync, writeFileSync } from 'node:fs'

const file = new URL('../package-lock.json', import.meta.url)
const lock = JSON.parse(readFileSync(file, 'utf8'))
const pk = lock.packages
let added = 0
for (const meta of Object.values({ ...pk })) {
  for (const [name, range] of Object.entries(meta.optionalDependencies ?? {})) {
    const key = `node_modules/${name}`
    if (pk[key] !== undefined) continue
    const entry = { version: String(range).replace(/^[\^~]/, ''), optional: true }
    const cpu = ['arm64', 'x64', 'arm', 'ia32'].find(c => new RegExp(`-${c}(-|$)`).test(name))
    const os = ['darwin', 'linux', 'win32', 'freebsd', 'android'].find(o => name.includes(o))
    if (cpu !== undefined) entry.cpu = [cpu]
    if (os !== undefined) entry.os = [os]
    if (name.includes('musl')) entry.libc = ['musl']
    else if (name.includes('gnu')) entry.libc = ['glibc']
    pk[key] = entry
    added++
  }
}
writeFileSync(file, JSON.stringify(lock, null, 2) + '\n')
console.log(`added ${added} optional platform entries`)

#!/usr/bin/env node
// Copy the console's static files (src/ops/console/*.html|js|css) next to the
// compiled admin server (dist/ops/console/): they ship in the package as they
// are, with no bundling step at install time.
import { cpSync, mkdirSync, readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const from = join(root, 'src', 'ops', 'console')
const to = join(root, process.argv[2] ?? 'dist', 'ops', 'console')
mkdirSync(to, { recursive: true })
for (const f of readdirSync(from)) if (/\.(html|js|css)$/.test(f)) cpSync(join(from, f), join(to, f))

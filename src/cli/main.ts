#!/usr/bin/env node
/**
 * `edgefabric` command line. Each sub-command lives in its own module and is
 * loaded on demand, so `--help` and simple commands start fast.
 */
import { runCli } from './run.js'

process.exitCode = await runCli(process.argv.slice(2))

// edgefabric is an ES module package (ESM-only). This file exists so that
// require('edgefabric') fails with a message saying so, instead of Node's
// generic ERR_REQUIRE_ESM.
'use strict'
const err = new Error("edgefabric is ESM-only: use `import { Hub, EdgeNode } from 'edgefabric'` (in CommonJS: `const { Hub } = await import('edgefabric')`)")
err.code = 'ERR_REQUIRE_ESM'
throw err

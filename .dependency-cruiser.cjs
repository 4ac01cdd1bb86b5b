// The import rules of src/ (README "Layout"): no cycles, type-only imports included, and each
// module imports only from its own layer or a lower one. `npm run lint:deps` checks them.

// src/policy/ holds the document (layer 1) and, above every section compiler, the assembler that
// turns the document into a CompiledPolicy and the checks that need compiled routes and issuers.
const ASSEMBLER = '^src/policy/(compile|compiled|compile_route|lint)\\.ts$'

/** Lowest first. A path pattern is matched against the module's path from the repository root. */
const LAYERS = [
  // The vocabulary every layer shares: logging, HTTP words, the policy document.
  ['^src/log(_output)?\\.ts$', '^src/http/', '^src/policy/(?!(compile|compiled|compile_route|lint)\\.ts$)'],
  ['^src/routing/'],
  ['^src/auth/'],
  ['^src/revocation/'],
  // Runtime pieces that need neither a Route, a CompiledPolicy nor a request's state.
  ['^src/proxy/', '^src/tracing/'],
  [ASSEMBLER, '^src/(decide|explain|report)\\.ts$'],
  ['^src/gateway/', '^src/admin/'],
  ['^src/server\\.ts$', '^src/lifecycle/', '^src/cluster/'],
  ['^src/cli/', '^src/devkit/'],
]

const either = (patterns) => `(${patterns.join('|')})`

const upward = LAYERS.slice(0, -1).map((layer, i) => ({
  name: `layer-${i + 1}-imports-upward`,
  comment: `layer ${i + 1} (${layer.join(' ')}) may import only from layers 1 to ${i + 1}`,
  severity: 'error',
  from: { path: either(layer) },
  to: { path: either(LAYERS.slice(i + 1).flat()) },
}))

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'an import cycle, type-only imports counted: the modules cannot be read, tested or layered apart',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    ...upward,
    {
      name: 'not-in-a-layer',
      comment: 'every module of src/ belongs to a layer: add its folder to LAYERS in .dependency-cruiser.cjs',
      severity: 'error',
      from: { path: '^src/', pathNot: either(LAYERS.flat()) },
      to: {},
    },
    {
      name: 'imports-a-module-in-no-layer',
      comment: 'every module of src/ belongs to a layer: add its folder to LAYERS in .dependency-cruiser.cjs',
      severity: 'error',
      from: {},
      to: { path: '^src/', pathNot: either(LAYERS.flat()) },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist)/' },
    // Type-only imports are dependencies too: a cycle through types still ties the modules together.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
    },
  },
}

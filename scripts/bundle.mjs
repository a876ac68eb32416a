// Bundles the CLI into one ESM file (dist/cli.js) after tsc has type-checked and emitted dist/.
// Loading one file instead of hundreds of modules saves ~150 ms of every cold start.
// PGlite (WebAssembly and data files beside its module) and libsodium (loaded on first use) stay external.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/cli.ts'],
  outfile: 'dist/cli.js',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  external: ['@electric-sql/pglite', 'libsodium-wrappers-sumo'],
  // CommonJS dependencies inside an ESM bundle still call require() for Node built-ins
  banner: { js: "import { createRequire as __sbCreateRequire } from 'node:module'; const require = __sbCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});

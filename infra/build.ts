import { copyFileSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { build } from 'esbuild';
import { REPO_ROOT } from './local/paths.ts';

/**
 * Bundles each Lambda handler in functions/ into .build/<name>/index.js (CommonJS for Node.js 22), with
 * every dependency inside: the bundle must not need node_modules. The zstd WASM binary goes next to it.
 */

const require = createRequire(import.meta.url);
const functionsDir = path.join(REPO_ROOT, 'functions');
const outDir = path.join(REPO_ROOT, '.build');
const zstdWasm = path.join(path.dirname(require.resolve('@bokuweb/zstd-wasm')), 'zstd.wasm');

export async function buildFunctions(names?: string[]): Promise<{ name: string; bytes: number }[]> {
  const all = readdirSync(functionsDir)
    .filter((f) => f.endsWith('.ts'))
    .map((f) => f.replace(/\.ts$/, ''));
  const selected = names && names.length > 0 ? names : all;
  rmSync(outDir, { recursive: true, force: true });
  const built: { name: string; bytes: number }[] = [];
  for (const name of selected) {
    if (!all.includes(name)) throw new Error(`no handler functions/${name}.ts (have: ${all.join(', ')})`);
    const dir = path.join(outDir, name);
    mkdirSync(dir, { recursive: true });
    const outfile = path.join(dir, 'index.js');
    await build({
      entryPoints: [path.join(functionsDir, `${name}.ts`)],
      outfile,
      bundle: true,
      platform: 'node',
      target: 'node22',
      format: 'cjs',
      sourcemap: false,
      minify: true,
      keepNames: true,
      legalComments: 'none',
      logLevel: 'warning',
      // The sources are ES modules; in a CommonJS bundle import.meta.url must come from __filename.
      define: { 'import.meta.url': '__kdrImportMetaUrl' },
      banner: { js: "const __kdrImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
    });
    copyFileSync(zstdWasm, path.join(dir, 'zstd.wasm'));
    // The repository is an ES module package; the bundle is CommonJS (sls invoke local requires it).
    writeFileSync(path.join(dir, 'package.json'), '{ "type": "commonjs" }\n');
    built.push({ name, bytes: statSync(outfile).size });
  }
  return built;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const built = await buildFunctions(process.argv.slice(2));
  for (const b of built)
    process.stdout.write(`.build/${b.name}/index.js ${(b.bytes / 1024).toFixed(0)} KiB\n`);
}

'use strict';

const { execFileSync } = require('node:child_process');
const path = require('node:path');

/**
 * kdr's local Serverless plugin.
 *
 * 1. Bundles the handlers (infra/build.ts, esbuild) inside the packaging lifecycle, so that `sls package`
 *    and `sls deploy` work on a fresh clone without `npm run build` first. A small local hook rather
 *    than serverless-esbuild: the bundle needs kdr's own settings (CommonJS banner for import.meta.url,
 *    the zstd WASM binary next to it, a package.json per function) that infra/build.ts already owns and
 *    the tests build the same way.
 * 2. Drops the DependsOn osls duplicates next to a Fn::GetAtt of the same resource.
 */
class KdrPlugin {
  constructor(serverless, options) {
    this.serverless = serverless;
    this.options = options;
    this.hooks = {
      // `sls package` and `sls deploy` (which packages first).
      'before:package:createDeploymentArtifacts': () => this.build([]),
      // `sls deploy function -f <name>` packages one function.
      'before:package:function:package': () =>
        this.build(this.options.function ? [this.options.function] : []),
      'before:package:finalize': () => this.dropImpliedDependencies(),
    };
  }

  /**
   * osls writes an explicit DependsOn on each function's role next to the Fn::GetAtt of the same role.
   * CloudFormation already orders a resource after what it references, and template validators (cfn-lint
   * W3005, moto's create-stack) reject the duplicate; keep only dependencies nothing references.
   */
  dropImpliedDependencies() {
    const resources = this.serverless.service.provider.compiledCloudFormationTemplate.Resources;
    for (const resource of Object.values(resources)) {
      if (!resource.DependsOn) continue;
      const referenced = new Set();
      collectReferences(resource.Properties, referenced);
      const kept = [resource.DependsOn].flat().filter((id) => !referenced.has(id));
      if (kept.length === 0) delete resource.DependsOn;
      else resource.DependsOn = kept;
    }
  }

  build(names) {
    // Tests that package several variants build once and set this; a deploy never does.
    if (process.env.KDR_PACKAGE_PREBUILT === '1') return;
    const root = this.serverless.serviceDir;
    this.serverless.cli?.log?.(
      `kdr: bundling ${names.length ? names.join(', ') : 'every function'} (infra/build.ts)`,
    );
    // A child process: infra/build.ts is TypeScript, run by tsx as `npm run build` does.
    execFileSync(process.execPath, ['--import', 'tsx', path.join(root, 'infra', 'build.ts'), ...names], {
      cwd: root,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
  }
}

/** The logical ids a value refers to through Ref, Fn::GetAtt or Fn::Sub. */
function collectReferences(value, into) {
  if (Array.isArray(value)) {
    for (const v of value) collectReferences(v, into);
    return;
  }
  if (!value || typeof value !== 'object') return;
  for (const [key, v] of Object.entries(value)) {
    if (key === 'Ref' && typeof v === 'string') into.add(v);
    else if (key === 'Fn::GetAtt') into.add(Array.isArray(v) ? v[0] : String(v).split('.')[0]);
    else if (key === 'Fn::Sub') {
      const text = Array.isArray(v) ? v[0] : v;
      for (const m of String(text).matchAll(/\$\{([A-Za-z0-9]+)[.}]/g)) into.add(m[1]);
      if (Array.isArray(v)) collectReferences(v[1], into);
    } else collectReferences(v, into);
  }
}

module.exports = KdrPlugin;

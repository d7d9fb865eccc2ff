import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * `node --import tsx bench/profile.ts <dir-of-.cpuprofile>`: self time per function (and per file) of a
 * V8 CPU profile, top 25, to find what costs most on the mirror's hot path. Produce one with
 * `node --cpu-prof --cpu-prof-dir=DIR bin/kdr.mjs mirror --until-caught-up`.
 */

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

const dir = process.argv[2] ?? '.';
const file = readdirSync(dir)
  .filter((f) => f.endsWith('.cpuprofile'))
  .map((f) => path.join(dir, f))
  // The main thread's profile is the biggest (tsx's loader thread writes one too).
  .sort((a, b) => statSync(a).size - statSync(b).size)
  .at(-1);
if (!file) throw new Error(`no .cpuprofile in ${dir}`);
const profile = JSON.parse(readFileSync(file, 'utf8')) as {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
};
const selfTime = new Map<number, number>();
for (const [i, id] of profile.samples.entries())
  selfTime.set(id, (selfTime.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
const total = [...selfTime.values()].reduce((a, b) => a + b, 0);
const byFunction = new Map<string, number>();
const byFile = new Map<string, number>();
for (const node of profile.nodes) {
  const t = selfTime.get(node.id) ?? 0;
  const where = node.callFrame.url.replace(/^file:\/\//, '').replace(process.cwd(), '.');
  const name = `${node.callFrame.functionName || '(anonymous)'} ${where}:${node.callFrame.lineNumber + 1}`;
  byFunction.set(name, (byFunction.get(name) ?? 0) + t);
  const module = where.includes('node_modules/')
    ? where.split('node_modules/')[1]!.split('/').slice(0, 3).join('/')
    : where;
  byFile.set(module, (byFile.get(module) ?? 0) + t);
}
const top = (m: Map<string, number>, n: number) =>
  [...m]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => `${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);
process.stdout.write(
  `${file}: ${(total / 1e6).toFixed(1)} s sampled\n\nby function:\n${top(byFunction, 25).join('\n')}\n\nby file:\n${top(byFile, 15).join('\n')}\n`,
);

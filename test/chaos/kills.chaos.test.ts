import { afterEach, expect, it } from 'vitest';
import { killAll, killDrill } from '../helpers/chaos.ts';

/** 20 SIGKILLs of `kdr mirror` at random points while a producer runs: 0 lost, 0 duplicated. */

afterEach(killAll);

it('loses and duplicates nothing through 20 SIGKILLs of kdr mirror', { timeout: 1_200_000 }, async () => {
  const seed = Number(process.env.KDR_TEST_SEED ?? Date.now() % 100_000);
  const { produced, repairs, final, comparison } = await killDrill(20, seed);
  expect(final.exitCode, final.stderr.slice(-2000)).toBe(0);
  expect(produced, `seed ${seed}`).toBeGreaterThan(1500);
  expect(comparison.problems, `seed ${seed}`).toEqual([]);
  expect(comparison.standbyDigest, `seed ${seed}`).toBe(comparison.sourceDigest);
  console.info(
    `20 kills (seed ${seed}): ${produced} records produced, ${comparison.records} compared, ${repairs} offset-map repairs`,
  );
});

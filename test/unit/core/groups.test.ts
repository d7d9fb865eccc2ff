import { expect, it } from 'vitest';
import { isMirrorGroup } from '../../../src/core/groups.ts';

it("kdr's own groups: the container mirror's, the event sources' (<prefix>-<topic>), any kdr-mirror-*", () => {
  const mirrorGroups = ['dr-esm'];
  expect(isMirrorGroup('dr-esm', mirrorGroups)).toBe(true);
  expect(isMirrorGroup('dr-esm-orders', mirrorGroups)).toBe(true);
  expect(isMirrorGroup('kdr-mirror-primary-standby-lambda-orders', mirrorGroups)).toBe(true);
  expect(isMirrorGroup('kdr-mirror-primary-standby', [])).toBe(true);
  // An application group whose name merely starts like the prefix is an application group.
  expect(isMirrorGroup('dr-esmeralda', mirrorGroups)).toBe(false);
  expect(isMirrorGroup('orders-service', mirrorGroups)).toBe(false);
});

/**
 * kdr's own consumer groups, never translated or moved as an application's: the container mirror's
 * (`kdr-mirror-<pair>` by default, or KDR_MIRROR_GROUP_ID), and the Lambda event sources', one per topic,
 * named `<KDR_MIRROR_GROUP_ID>-<topic>` (serverless.yml param mirrorConsumerGroupId).
 */
export function isMirrorGroup(group: string, mirrorGroups: readonly string[]): boolean {
  return (
    group.startsWith('kdr-mirror-') || mirrorGroups.some((m) => group === m || group.startsWith(`${m}-`))
  );
}

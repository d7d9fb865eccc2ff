import { defineConfig } from 'vitest/config';

// Node 20 machines get a deprecation notice from the AWS SDK in every worker; Lambda runs Node 22.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', 'test/e2e/**/*.test.ts'],
          // The lab is brought up once per run (and down after, unless it was already up).
          globalSetup: ['test/helpers/globalSetup.ts'],
          // One file at a time: two cores run six JVMs and moto; tests use unique topic names regardless.
          fileParallelism: false,
          sequence: { groupOrder: 1 },
          testTimeout: 180_000,
          hookTimeout: 300_000,
        },
      },
      {
        // `npm run test:chaos`: failures injected on purpose (kills, outages, broker loss, a slow network).
        test: {
          name: 'chaos',
          include: ['test/chaos/**/*.test.ts'],
          globalSetup: ['test/helpers/globalSetup.ts'],
          fileParallelism: false,
          sequence: { groupOrder: 2 },
          testTimeout: 900_000,
          hookTimeout: 600_000,
        },
      },
    ],
  },
});

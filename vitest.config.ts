import { defineConfig } from 'vitest/config';

// The suite runs on embedded PGlite always, and again on PostgreSQL when TEST_DATABASE_URL is set
// (.ci/run sets it). test/global-setup.ts prepares one migrated database of each kind; every test
// file starts from a copy of it (test/helpers/db.ts).
const kinds = ['pglite', ...(process.env.TEST_DATABASE_URL ? ['postgres'] : [])];

export default defineConfig({
  test: {
    globalSetup: ['./test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    maxWorkers: 2,
    projects: kinds.map((kind) => ({
      extends: true,
      test: { name: kind, include: ['test/**/*.test.ts'], env: { SB_TEST_DB: kind } },
    })),
  },
});

import { defineConfig } from 'drizzle-kit';

// Migrations are generated from src/db/schema and committed in drizzle/.
// Row-level security (roles, grants, FORCE, policies) lives in a custom migration
// (`drizzle-kit generate --custom`), because drizzle-kit does not emit FORCE ROW LEVEL SECURITY.
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/db/schema/index.ts',
  out: './drizzle',
});

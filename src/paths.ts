import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';

/** The package root: two levels above this file both in src/ (tsx) and in dist/ (built). */
export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const migrationsFolder = resolve(packageRoot, 'drizzle');

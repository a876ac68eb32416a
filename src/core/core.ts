import type { Db } from '../db/client.js';

/** What every core function needs: the database and the tenant it serves. */
export interface Core {
  db: Db;
  tenantId: string;
  /** default length of a Switch Account session, in minutes */
  switchMinutes: number;
}

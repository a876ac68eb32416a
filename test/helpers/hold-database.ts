import postgres from 'postgres';
import { testDbKind, type TestDatabase } from './db.js';

/**
 * Hold the database until `release` is called, so that tool calls wait inside it meanwhile, holding
 * their connections as calls stuck behind a migration or a long report do. On PostgreSQL: an
 * ACCESS EXCLUSIVE lock on the tables every call reads, from a connection of its own. On the
 * embedded database: an open transaction, which every other query waits behind.
 */
export async function holdDatabase(database: TestDatabase): Promise<{ release: () => Promise<void> }> {
  let free!: () => void;
  const freed = new Promise<void>((r) => (free = r));
  let held!: () => void;
  const isHeld = new Promise<void>((r) => (held = r));
  const hold = async () => {
    held();
    await freed;
  };
  const other = testDbKind() === 'postgres' ? postgres(database.url!, { max: 1, onnotice: () => {} }) : null;
  const tx = other
    ? other.begin(async (t) => {
        await t`lock table accounts, users, api_tokens in access exclusive mode`;
        await hold();
      })
    : database.db.transaction(hold);
  await isHeld;
  return {
    async release() {
      free();
      await tx;
      await other?.end({ timeout: 0 });
    },
  };
}

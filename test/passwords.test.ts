import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq } from 'drizzle-orm';
import { buildWorld, connect, data, type World } from './helpers/world.js';
import { users } from '../src/db/schema/index.js';
import { verifyPassword } from '../src/core/crypto.js';

let w: World;
beforeAll(async () => {
  w = await buildWorld();
});
afterAll(async () => {
  await w.close();
});

describe('passwords', () => {
  it('are stored only as argon2id hashes that verify the password and nothing else', async () => {
    const s = await connect(w.core, w.tokens.admin);
    const password = 'a long and unusual passphrase';
    const { user } = data<{ user: { id: string } }>(
      await s.call('create_user', { account: 'boring-co', email: 'pw-hash@switchboard.test', name: 'P', role: 'member', password }),
    );
    const [row] = await w.core.db.select({ hash: users.passwordHash }).from(users).where(eq(users.id, user.id));
    expect(row!.hash).toMatch(/^\$argon2id\$/);
    expect(row!.hash).not.toContain(password);
    expect(await verifyPassword(row!.hash!, password)).toBe(true);
    expect(await verifyPassword(row!.hash!, password + '!')).toBe(false);
    await s.close();
  });
});

import { evaluate, compile } from '../src/engine/expressions.js';
const doc: any = { trigger: { body: {} }, steps: {}, account: { id: 'x', slug: 's', routing_key: null } };
const cases: [string, string][] = [
  ['(a|aa)* fib', `$contains("${'a'.repeat(34)}!", /^(a|aa)*$/)`],
  ['(a|a)* exp', `$contains("${'a'.repeat(28)}!", /^(a|a)*$/)`],
  ['(\\w|\\d)+', `$contains("${'1'.repeat(28)}!", /^(\\w|\\d)+$/)`],
  ['a*a*a*b poly', `$contains($pad("", 3000, "a"), /a*a*a*b/)`],
  ['\\s*\\s*x poly2', `$contains($pad("", 20000, " "), /\\s*\\s*x/)`],
  ['.*.*=.* poly', `$contains($pad("", 3000, "x"), /.*.*.*=/)`],
];
for (const [name, e] of cases) {
  const t0 = performance.now();
  try { const r = await evaluate(e, doc); console.log(name, 'ok', r, Math.round(performance.now() - t0), 'ms'); }
  catch (err) { console.log(name, 'ERR', (err as Error).message.slice(0, 120), Math.round(performance.now() - t0), 'ms'); }
}
for (const p of ['/(\\d{1,3}\\.){3}\\d{1,3}/', '/^[\\w.+-]+@([\\w-]+\\.)+[\\w-]+$/', '/([a-z]+-)*[a-z]+/', '/(\\d{2}-){2}\\d{4}/', '/\\\\1/', '/[\\1]/', '/(?:\\s*,\\s*)+/', '/(ab?)+/']) {
  try { compile(`$match("x", ${p})`); console.log('accepted', p); } catch (err) { console.log('refused', p, (err as Error).message.slice(0, 100)); }
}

import { describe, expect, it } from 'vitest';
import { compile, evaluate, ExpressionError, render, stepReferences, templateExpressions } from '../src/engine/expressions.js';

/** JSONata expressions and {{ }} templates: types kept, text built, references found, every evaluation bounded. */

const doc = {
  trigger: { body: { id: 'evt_1', amount: 1250, items: [{ sku: 'a', qty: 2 }, { sku: 'b', qty: 1 }], location_id: 'studio-01' }, headers: { 'x-id': 'h1' }, query: {}, method: 'POST' },
  steps: { lookup: { output: { status: 200, body: { customer: { email: 'pat@example.test' } } } } },
  account: { id: '00000000-0000-0000-0000-000000000001', slug: 'acme-studio-01', routing_key: 'studio-01' },
};

describe('render', () => {
  it('keeps the JSON type of a value that is exactly one expression', async () => {
    expect(await render('{{ trigger.body.amount }}', doc)).toBe(1250);
    expect(await render('{{ trigger.body.items }}', doc)).toEqual([{ sku: 'a', qty: 2 }, { sku: 'b', qty: 1 }]);
    expect(await render('{{ trigger.body.amount > 1000 }}', doc)).toBe(true);
    expect(await render('{{ trigger.body.missing }}', doc)).toBeNull();
  });

  it('writes results into text, objects as JSON and nothing for an empty result', async () => {
    expect(await render('Order {{ trigger.body.id }} for {{ steps.lookup.output.body.customer.email }}', doc)).toBe('Order evt_1 for pat@example.test');
    expect(await render('{{ trigger.body.amount / 100 }} EUR', doc)).toBe('12.5 EUR');
    expect(await render('items={{ trigger.body.items.sku }}', doc)).toBe('items=["a","b"]');
    expect(await render('[{{ trigger.body.nothing }}]', doc)).toBe('[]');
    // two expressions in one string are text, not one expression spanning "}} … {{"
    expect(await render('{{ trigger.body.id }}-{{ account.slug }}', doc)).toBe('evt_1-acme-studio-01');
  });

  it('renders nested objects and arrays, leaving literals alone', async () => {
    const out = await render({ to: '{{ steps.lookup.output.body.customer.email }}', lines: ['{{ $count(trigger.body.items) }}', 7, null, false], plain: 'no braces' }, doc);
    expect(out).toEqual({ to: 'pat@example.test', lines: [2, 7, null, false], plain: 'no braces' });
    // a "__proto__" key stays an own key of the result, never its prototype
    const odd = (await render(JSON.parse('{"__proto__": "{{ 1 + 1 }}"}'), doc)) as Record<string, unknown>;
    expect(Object.getOwnPropertyNames(odd)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(odd)).toBe(Object.prototype);
  });
});

describe('bounds', () => {
  it('stops an endless recursion and a long loop with an expression error', async () => {
    await expect(evaluate('($f := function($x) { $f($x + 1) }; $f(0))', doc)).rejects.toThrow(ExpressionError);
    await expect(evaluate('($loop := function($n) { $n > 0 ? $loop($n - 1) : 0 }; $loop(100000000))', doc)).rejects.toThrow(/Stack overflow|timeout/i);
  });

  it('refuses results and padding beyond the size limit', async () => {
    await expect(evaluate('$pad("", 100000000)', doc)).rejects.toThrow(/\$pad would build 100000000 characters/);
    expect(await evaluate('$pad("7", -3, "0")', doc)).toBe('007');
    await expect(evaluate('[1..1000].($pad("", 2000, "x"))', doc, { timeoutMs: 1000, maxResultChars: 100_000 })).rejects.toThrow(/more than the limit of 100000/);
  });

  it('bounds what one evaluation builds, inside a single step too', async () => {
    // doubling a text with & in a recursion: refused as it passes the limit, long before memory runs out
    await expect(evaluate('($f := function($s, $n) { $n = 0 ? $s : $f($s & $s, $n - 1) }; $length($f("x", 28)))', doc)).rejects.toThrow(/builds a text of \d+ characters/);
    await expect(evaluate('[1..100000].($pad("", 1000000))', doc)).rejects.toThrow(/builds more than \d+ characters and items/);
    await expect(evaluate('$split($pad("", 1000000, "x"), "")', doc)).rejects.toThrow(/more than the limit/);
  });

  it('refuses overlong expressions and scans templates full of braces in one pass', () => {
    expect(() => compile('1' + '+1'.repeat(4500))).toThrow(/longer than 4000 characters/);
    expect(templateExpressions('{'.repeat(200_000))).toEqual([]);
    expect(templateExpressions('{{'.repeat(50_000) + 'a }}')).toEqual([{ path: '', text: '{{'.repeat(49_999) + 'a' }]);
  });

  it('runs regular expressions in linear time: patterns that backtrack for minutes elsewhere end at once', async () => {
    // each of these takes from seconds to minutes on a backtracking engine, on inputs this short:
    // there, this test would not end within its timeout
    expect(await evaluate('$contains("' + 'a'.repeat(40) + '!", /^(a+)+$/)', doc)).toBe(false);
    expect(await evaluate('$contains("' + 'a'.repeat(40) + '!", /^(a|a)*$/)', doc)).toBe(false);
    expect(await evaluate('$contains("' + '1'.repeat(40) + '!", /^(\\w|\\d)+$/)', doc)).toBe(false);
    expect(await evaluate('$contains($pad("", 5000, "a"), /a*a*a*b/)', doc)).toBe(false);
    // ordinary patterns work as before
    expect(await evaluate('$match(trigger.body.location_id, /studio-(\\d+)/).groups[0]', doc)).toBe('01');
    expect(await evaluate('$replace(account.slug, /-(\\w+)/, "_$1")', doc)).toBe('acme_studio_01');
    expect(await evaluate('$split("a1b22c", /\\d+/)', doc)).toEqual(['a', 'b', 'c']);
    expect(await evaluate('$match("10.0.0.1", /^(\\d{1,3}\\.){3}\\d{1,3}$/).match', doc)).toBe('10.0.0.1');
    expect(await evaluate('$contains("Studio", /studio/i)', doc)).toBe(true);
    expect(await evaluate('$count($match("a1 b2 c3", /[a-z]\\d/))', doc)).toBe(3);
    // what RE2 cannot run is refused when the automation is saved, with the reason
    expect(() => compile('$contains(trigger.body.id, /(x)\\1/)')).toThrow(/cannot be used: .*no backreferences or lookaround/);
    expect(() => compile('$contains(trigger.body.id, /a(?=b)/)')).toThrow(/cannot be used/);
    // $toMillis parses with a picture through a regular expression of its own: long timestamps are refused
    expect(await evaluate('$toMillis("2026-11-29", "[Y0001]-[M01]-[D01]")', doc)).toBe(Date.UTC(2026, 10, 29));
    await expect(evaluate('$toMillis($pad("", 500, "one "), "[Yw] [Mw] [Dw] [Hw]")', doc)).rejects.toThrow(/at most 64 are read/);
    expect(await evaluate('$toMillis("2026-11-29T10:00:00Z")', doc)).toBe(Date.UTC(2026, 10, 29, 10));
  });

  it('has no way into JavaScript', async () => {
    // JSONata has no eval of JavaScript; these are plain (failing or empty) lookups, never code
    expect(await evaluate('constructor', doc)).toBeUndefined();
    expect(await evaluate('trigger.constructor.constructor', doc)).toBeUndefined();
    // $eval evaluates JSONata, not JavaScript: "process.exit(1)" is a lookup of a field named process
    expect(await evaluate('$eval("process.exit(1)")', doc)).toBeUndefined();
    expect(await evaluate('$eval("1 + 2")', doc)).toBe(3);
    // and what it evaluates is bounded like the rest
    await expect(evaluate('$eval("($f := function($x) { $f($x) }; $f(1))")', doc)).rejects.toThrow(ExpressionError);
  });

  it('names the expression and the reason when evaluation fails', async () => {
    const err = await evaluate('$number("abc") + trigger.body.id', doc).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExpressionError);
    expect((err as ExpressionError).expression).toBe('$number("abc") + trigger.body.id');
  });
});

describe('parsing and references', () => {
  it('reports a parse error with its position', () => {
    expect(() => compile('trigger.body.(')).toThrow(/at character/);
    expect(() => compile('   ')).toThrow(/empty/);
  });

  it('finds the steps an expression reads, not text in its strings', () => {
    expect([...stepReferences(compile('steps.a.output.x & $string(steps.b.output) & "steps.c"'))].sort()).toEqual(['a', 'b']);
    expect([...stepReferences(compile('$keys(steps)'))]).toEqual(['*']);
    expect([...stepReferences(compile('trigger.body.steps.z'))]).toEqual([]);
  });

  it('lists the expressions of a template with their place', () => {
    expect(templateExpressions({ url: 'https://x.test/{{ a }}', body: { list: ['{{ b }}', 'c'] } })).toEqual([
      { path: 'url', text: 'a' },
      { path: 'body.list[0]', text: 'b' },
    ]);
  });
});

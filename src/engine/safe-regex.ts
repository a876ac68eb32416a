import { RE2JS } from 're2js';

/**
 * Regular expressions in JSONata expressions ($match, $replace, $split, $contains with /…/) run on
 * RE2 (the `re2js` package: a pure-JavaScript port of RE2, no native build), not on JavaScript's
 * backtracking engine. RE2 matches in time linear in the input, so no pattern — (a+)+, (a|a)*,
 * .*.*.*= — can hold the worker, and every account's runs with it, for seconds or minutes; the
 * evaluation time limit could not have interrupted a synchronous backtracking match. What RE2 does
 * not support (backreferences, lookaround) is refused with a clear reason, at save and at run.
 *
 * `LinearRegExp` is the RegexEngine JSONata is given: it keeps JSONata's use of RegExp (exec and
 * lastIndex) and nothing more. A pattern reads at most MAX_REGEX_INPUT characters.
 */

export const MAX_REGEX_INPUT = 1_000_000;

/** Why a pattern cannot be used, or null. */
export function unsupportedRegex(source: string, flags = ''): string | null {
  try {
    compilePattern(source, flags);
    return null;
  } catch (err) {
    return reason(err);
  }
}

const reason = (err: unknown): string =>
  `${(err as Error).message.replace(/^error parsing regexp: /, '')} (expressions use linear-time regular expressions: no backreferences or lookaround)`;

function compilePattern(source: string, flags: string): RE2JS {
  let f = 0;
  if (flags.includes('i')) f |= RE2JS.CASE_INSENSITIVE;
  if (flags.includes('m')) f |= RE2JS.MULTILINE;
  if (flags.includes('s')) f |= RE2JS.DOTALL;
  return RE2JS.compile(source, f);
}

export class LinearRegExp {
  lastIndex = 0;
  readonly source: string;
  private readonly pattern: RE2JS;

  constructor(re: RegExp | string) {
    this.source = re instanceof RegExp ? re.source : re;
    try {
      this.pattern = compilePattern(this.source, re instanceof RegExp ? re.flags : '');
    } catch (err) {
      throw Object.assign(new Error(`the regular expression /${this.source.slice(0, 60)}/ cannot be used: ${reason(err)}`), { code: 'SB001' });
    }
  }

  exec(text: string): RegExpExecArray | null {
    if (text.length > MAX_REGEX_INPUT) {
      throw Object.assign(new Error(`a regular expression is applied to a text of ${text.length} characters, more than the limit of ${MAX_REGEX_INPUT}`), { code: 'SB002' });
    }
    const m = this.pattern.matcher(text);
    if (this.lastIndex > text.length || !m.find(this.lastIndex)) {
      this.lastIndex = 0;
      return null;
    }
    const groups: (string | undefined)[] = [];
    for (let i = 0; i <= m.groupCount(); i++) groups.push(m.group(i) ?? undefined);
    const result = Object.assign(groups, { index: m.start(), input: text }) as unknown as RegExpExecArray;
    this.lastIndex = m.end();
    return result;
  }
}

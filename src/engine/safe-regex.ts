/**
 * Regular expressions in JSONata expressions ($match, $replace, $split, $contains with /…/) run
 * on JavaScript's backtracking engine, synchronously: a pattern such as /(a+)+$/ on a long
 * enough text blocks the worker — every account's runs — for minutes, and the evaluation
 * time limit cannot interrupt it. So patterns that backtrack exponentially are refused when the
 * automation is saved and again when they would run:
 *   - a quantified group that itself contains a quantifier ("star height" above one: (a+)+,
 *     (a*b?)*, (x{2,})+);
 *   - backreferences (\1, \k<name>), which no linear-time engine supports either;
 * and a pattern is applied to at most MAX_REGEX_INPUT characters. Polynomial cases of one level
 * ((a|aa)* and the like) stay possible; the input cap bounds them.
 */

export const MAX_REGEX_INPUT = 20_000;

/** Why a pattern is refused, or null. */
export function unsafeRegex(source: string): string | null {
  if (/\\[1-9]|\\k</.test(source)) return 'it uses a backreference';
  // open groups: whether each contains a quantifier so far
  const groups: boolean[] = [];
  let inClass = false;
  // what the next quantifier applies to: a group that contained a quantifier, or anything else
  let atomHadQuantifier = false;
  let afterQuantifier = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    if (inClass) {
      if (c === '\\') i++;
      else if (c === ']') inClass = false;
      continue;
    }
    let quantifier: 'repeat' | 'optional' | null = null;
    let end = i;
    if (c === '*' || c === '+') quantifier = 'repeat';
    else if (c === '?') quantifier = afterQuantifier ? null : 'optional'; // after a quantifier: lazy mark
    else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(source.slice(i));
      if (m) {
        end = i + m[0].length - 1;
        const min = Number(m[1]);
        const max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
        quantifier = max > 1 ? 'repeat' : min === 0 ? 'optional' : null;
        if (!quantifier) {
          // {1}: exactly once, no repetition at all
          i = end;
          continue;
        }
      }
    }
    if (quantifier) {
      if (quantifier === 'repeat' && atomHadQuantifier) return 'a repeated group contains a repetition (nested quantifiers backtrack exponentially)';
      if (groups.length) groups[groups.length - 1] = true;
      atomHadQuantifier = false;
      afterQuantifier = true;
      i = end;
      continue;
    }
    if (afterQuantifier && c === '?') continue;
    afterQuantifier = false;
    atomHadQuantifier = false;
    if (c === '\\') {
      i++;
    } else if (c === '[') {
      inClass = true;
    } else if (c === '(') {
      groups.push(false);
      // (?:  (?=  (?!  (?<=  (?<!  (?<name>: group syntax, not a quantifier
      if (source[i + 1] === '?') {
        i++;
        if (source[i + 1] === '<' && source[i + 2] !== '=' && source[i + 2] !== '!') {
          const close = source.indexOf('>', i);
          if (close > 0) i = close;
        } else i++;
      }
    } else if (c === ')') {
      const had = groups.pop() ?? false;
      if (had && groups.length) groups[groups.length - 1] = true;
      atomHadQuantifier = had;
    }
  }
  return null;
}

/** The RegExp JSONata is given (its RegexEngine option): refuses unsafe patterns and long inputs. */
export class SafeRegExp extends RegExp {
  constructor(pattern: RegExp | string, flags?: string) {
    const source = pattern instanceof RegExp ? pattern.source : pattern;
    const why = unsafeRegex(source);
    if (why) throw Object.assign(new Error(`the regular expression /${source.slice(0, 60)}/ is refused: ${why}`), { code: 'SB001' });
    super(pattern, flags ?? (pattern instanceof RegExp ? pattern.flags : undefined));
  }

  override exec(text: string): RegExpExecArray | null {
    if (text.length > MAX_REGEX_INPUT) {
      throw Object.assign(new Error(`a regular expression is applied to a text of ${text.length} characters, more than the limit of ${MAX_REGEX_INPUT}`), { code: 'SB002' });
    }
    return super.exec(text);
  }
}

import { describe, expect, it } from 'vitest';
import { checkTopicsRegex, emptySelectionError, topicsOption } from '../../../src/cli/context.ts';
import { emptySelectionMessage } from '../../../src/core/topicSync.ts';
import { InputError } from '../../../src/errors.ts';

/** The words an operator gets when a topic regex selects nothing, or is no regex at all. */

const topics = ['__consumer_offsets', '_kdr-state', 'orders-eu', 'orders-us', 'payments', 'users'];

describe('emptySelectionMessage', () => {
  it('says the regex must match the whole name, suggests one that selects, and lists what exists', () => {
    const { message, suggestion, shown, count } = emptySelectionMessage({
      regex: 'orders',
      option: '--topics',
      where: 'on primary',
      existing: topics,
    });
    expect(message).toBe(
      '--topics "orders" selects no topic on primary: the regex must match the whole topic name (a full ' +
        `match, like MirrorMaker 2's topics setting), so "orders" does not match "orders-eu". Did you mean ` +
        '"orders.*"? It selects 2 topics. Topics on primary: orders-eu, orders-us, payments, users.',
    );
    expect(suggestion).toBe('orders.*');
    // Internal topics are never selected, so never offered; the near misses come first.
    expect(shown).toEqual(['orders-eu', 'orders-us', 'payments', 'users']);
    expect(count).toBe(4);
  });

  it('suggests .*X.* when the regex matches inside names only, and wraps an alternation', () => {
    expect(
      emptySelectionMessage({ regex: 'eu', option: '--topics', where: 'on primary', existing: topics })
        .suggestion,
    ).toBe('.*eu.*');
    const alternation = emptySelectionMessage({
      regex: 'orders|pay',
      option: 'KDR_TOPICS',
      where: 'on primary',
      existing: topics,
    });
    expect(alternation.suggestion).toBe('(?:orders|pay).*');
    expect(alternation.message).toContain('It selects 3 topics.');
    expect(alternation.message.startsWith('KDR_TOPICS "orders|pay" selects no topic on primary')).toBe(true);
  });

  it('explains full matching with an example when no name even contains a match', () => {
    const { message, suggestion } = emptySelectionMessage({
      regex: 'billing',
      option: '--topics',
      where: 'in snapshot 20261124T193000Z-3fa9',
      existing: topics,
    });
    expect(suggestion).toBeUndefined();
    expect(message).toContain('whole topic name (a full match');
    expect(message).toContain('"orders" does not match "orders-eu" ("orders.*" does)');
    expect(message).not.toContain('Did you mean');
    expect(message).toContain(
      'Topics in snapshot 20261124T193000Z-3fa9: orders-eu, orders-us, payments, users.',
    );
  });

  it('shows a few names and counts the rest', () => {
    const many = Array.from({ length: 25 }, (_, i) => `t${String(i).padStart(2, '0')}`);
    const { message, shown, count } = emptySelectionMessage({
      regex: 'x',
      option: '--topics',
      where: 'on primary',
      existing: many,
      limit: 3,
    });
    expect(shown).toEqual(['t00', 't01', 't02']);
    expect(count).toBe(25);
    expect(message).toContain('Topics on primary: t00, t01, t02, and 22 more.');
  });

  it('says so when there are no topics at all', () => {
    expect(
      emptySelectionMessage({
        regex: '.*',
        option: 'KDR_TOPICS',
        where: 'on primary',
        existing: ['__consumer_offsets'],
      }).message,
    ).toContain('There are no topics on primary (internal topics are never selected).');
  });

  it('copes with an invalid regex (no near misses, no suggestion)', () => {
    const { suggestion, shown } = emptySelectionMessage({
      regex: '(',
      option: '--topics',
      where: 'on primary',
      existing: topics,
    });
    expect(suggestion).toBeUndefined();
    expect(shown).toHaveLength(4);
  });
});

describe('the CLI side', () => {
  it('is an input error (exit 2) whose --json form carries the regex and the suggestion', () => {
    const error = emptySelectionError({
      regex: 'orders',
      option: '--topics',
      where: 'on primary',
      existing: topics,
    });
    expect(error).toBeInstanceOf(InputError);
    expect(error.exitCode).toBe(2);
    expect(error.toJSON()).toEqual({
      error: 'INPUT_INVALID',
      message: error.message,
      retryable: false,
      regex: 'orders',
      match: 'full',
      suggestion: 'orders.*',
      existingTopics: ['orders-eu', 'orders-us', 'payments', 'users'],
      existingTopicCount: 4,
    });
  });

  it('names an invalid regex, as kdr would use it', () => {
    expect(checkTopicsRegex('orders-.*')).toBe('orders-.*');
    expect(checkTopicsRegex(undefined)).toBeUndefined();
    expect(() => checkTopicsRegex('orders-(eu')).toThrow(
      /^--topics "orders-\(eu" is not a valid regular expression \(Invalid regular expression: .*\)$/,
    );
    const error = (() => {
      try {
        checkTopicsRegex('[');
      } catch (e) {
        return e as InputError;
      }
    })();
    expect(error?.toJSON()).toMatchObject({ error: 'INPUT_INVALID', regex: '[' });
  });

  it('names where the regex came from', () => {
    expect(topicsOption('x')).toBe('--topics');
    expect(topicsOption(undefined)).toBe('KDR_TOPICS');
  });
});

import { describe, expect, it } from 'vitest';
import { formatSrc, parseSrc, withoutProvenance } from '../../../src/core/provenance.ts';

describe('provenance', () => {
  it('formats and parses kdr.src', () => {
    const p = { cluster: 'primary', topic: 'my.topic_1-x', partition: 12, offset: 9_007_199_254_740_991 };
    expect(parseSrc(Buffer.from(formatSrc(p)))).toEqual(p);
  });

  it.each(['', 'a/b/c', 'a/b/1/x', 'a/b/-1/2', '/t/1/2', 'a/b/1/2/3'])('rejects %j', (text) => {
    expect(parseSrc(text)).toBeUndefined();
  });

  it('strips only kdr headers', () => {
    const headers = [
      { key: 'kdr.src', value: Buffer.from('x') },
      { key: 'kdr', value: null },
      { key: 'kdr.origin', value: Buffer.from('y') },
    ];
    expect(withoutProvenance(headers)).toEqual([{ key: 'kdr', value: null }]);
  });
});

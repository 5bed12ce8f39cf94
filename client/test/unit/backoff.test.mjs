// Backoff arithmetic: exponential growth, the cap, full jitter, the defaults.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_BACKOFF, backoffCeiling, backoffDelay, resolveBackoff,
} from '../../dist/index.js';

test('defaults are 500 ms initial, x2, 30 s cap, reset after 10 s open', () => {
  assert.deepEqual({ ...DEFAULT_BACKOFF },
                   { initialDelay: 500, maxDelay: 30000, factor: 2, stableAfter: 10000 });
});

test('the ceiling doubles per failure and stops at the cap', () => {
  const b = resolveBackoff();
  const ceilings = [0, 1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffCeiling(n, b));
  assert.deepEqual(ceilings, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
});

test('the ceiling stays finite for absurd attempt counts', () => {
  assert.equal(backoffCeiling(5000, resolveBackoff()), 30000);
});

test('full jitter: the delay is uniform in [0, ceiling)', () => {
  const b = resolveBackoff();
  assert.equal(backoffDelay(3, b, () => 0), 0);
  assert.equal(backoffDelay(3, b, () => 0.5), 2000);
  assert.equal(backoffDelay(3, b, () => 0.999999), 3999);
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < 2000; i++) {
    const d = backoffDelay(2, b);
    min = Math.min(min, d);
    max = Math.max(max, d);
  }
  assert.ok(min >= 0 && max < 2000, `delays stayed in [0, 2000): ${min}..${max}`);
  assert.ok(max - min > 1000, 'delays are spread, not constant');
});

test('settings override the defaults one by one', () => {
  const b = resolveBackoff({ initialDelay: 100, maxDelay: 1000 });
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((n) => backoffCeiling(n, b)),
                   [100, 200, 400, 800, 1000, 1000]);
  assert.equal(b.stableAfter, 10000);
});

test('impossible settings are refused', () => {
  assert.throws(() => resolveBackoff({ initialDelay: -1 }), RangeError);
  assert.throws(() => resolveBackoff({ factor: 0.5 }), RangeError);
  assert.throws(() => resolveBackoff({ maxDelay: NaN }), RangeError);
});

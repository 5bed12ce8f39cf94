// Cursor comparison: decimal strings by value, beyond 2^53, opaque otherwise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareCursor, isDuplicate } from '../../dist/index.js';

test('cursors compare by decimal value, not as text', () => {
  assert.ok(compareCursor('9', '10') < 0);
  assert.ok(compareCursor('10', '9') > 0);
  assert.equal(compareCursor('42', '42'), 0);
});

test('cursors beyond 2^53 keep their order', () => {
  assert.ok(compareCursor('9007199254740993', '9007199254740992') > 0);
  assert.ok(compareCursor('18446744073709551615', '18446744073709551614') > 0);
});

test('leading zeros do not change a cursor', () => {
  assert.equal(compareCursor('007', '7'), 0);
  assert.ok(compareCursor('0010', '9') > 0);
});

test('non-decimal cursors are only equal or unordered', () => {
  assert.equal(compareCursor('abc', 'abc'), 0);
  assert.equal(compareCursor('abc', 'abd'), null);
  assert.equal(compareCursor('12', 'x'), null);
});

test('a message is a duplicate when its id is not past the last one', () => {
  assert.equal(isDuplicate('5', null), false);
  assert.equal(isDuplicate('5', '5'), true);
  assert.equal(isDuplicate('4', '5'), true);
  assert.equal(isDuplicate('6', '5'), false);
  assert.equal(isDuplicate('x', 'y'), false);
});

/*
 * Topic names and presence messages, as docs/protocol.md defines them:
 * a topic is 1 to 128 ASCII letters, digits, `_ - . : / @` (the same rule the
 * extension enforces), and a presence message is the data
 * `{"presence": "join"|"leave", "topic": T, "user_id": U}`.
 */

import type { PresenceKind } from './events.js';

/** The longest topic name the server accepts. */
export const TOPIC_MAX_LENGTH = 128;

const TOPIC_RE = /^[A-Za-z0-9_\-.:/@]{1,128}$/;

/** Whether `topic` is a valid topic name. */
export function isValidTopic(topic: unknown): topic is string {
  return typeof topic === 'string' && TOPIC_RE.test(topic);
}

/** Throw a TypeError that says what is wrong with `topic`, when it is not valid. */
export function assertTopic(topic: unknown): asserts topic is string {
  if (isValidTopic(topic)) return;
  const shown = typeof topic === 'string' ? JSON.stringify(topic) : String(topic);
  throw new TypeError(`wsnotify: invalid topic name ${shown}: a topic is 1 to ` +
                      `${TOPIC_MAX_LENGTH} ASCII letters, digits, '_', '-', '.', ':', '/' or '@'`);
}

/** A presence message, as parsed from a message's data. */
export interface PresenceMessage {
  presence: PresenceKind;
  topic: string;
  user_id: string;
}

/** Whether a message's data is a presence message. */
export function isPresenceMessage(data: unknown): data is PresenceMessage {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return false;
  const d = data as Record<string, unknown>;
  return (d.presence === 'join' || d.presence === 'leave') && typeof d.topic === 'string' &&
    typeof d.user_id === 'string';
}

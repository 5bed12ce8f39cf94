/*
 * wsnotify-client: the browser client for wsnotify-bridge.
 * `import { WSClient } from 'wsnotify-client'`; the React hook is in
 * 'wsnotify-client/react'.  See docs/client.md.
 */
export {
  WSClient, WSNOTIFY_V1, browserOnlineSource,
} from './client.js';
export type {
  CloseInfo, GetToken, OnlineSource, Protocol, TokenRequest, WSClientOptions, WebSocketConstructor,
  WebSocketLike,
} from './client.js';
export {
  WSCloseEvent, WSErrorEvent, WSMessageEvent, WSPresenceEvent, WSReplyEvent, WSResetEvent,
  WSStateEvent, WSSubscriptionErrorEvent,
} from './events.js';
export type { ConnectionState, PresenceKind, WSClientEventMap, WSErrorKind } from './events.js';
export { TOPIC_MAX_LENGTH, assertTopic, isPresenceMessage, isValidTopic } from './topics.js';
export type { PresenceMessage } from './topics.js';
export { WSRequestError } from './errors.js';
export { DEFAULT_BACKOFF, backoffCeiling, backoffDelay, resolveBackoff } from './backoff.js';
export type { BackoffOptions } from './backoff.js';
export { compareCursor, isDuplicate } from './cursor.js';
export { BINARY_MESSAGE, decodeBinaryEnvelope } from './binary.js';
export type { BinaryEnvelope } from './binary.js';

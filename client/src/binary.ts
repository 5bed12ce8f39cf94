/**
 * The `wsnotify.v1` binary envelope (docs/protocol.md): a binary message
 * (`send_ws_binary` and its forms) arrives as the byte 0x01, its cursor as
 * 8 bytes big-endian, then the message's bytes.
 */

/** The first byte of a v1 binary message envelope. */
export const BINARY_MESSAGE = 0x01;

/** Length of the envelope's header: type byte + 8-byte id. */
const HEADER = 9;

/** A decoded v1 binary envelope: the cursor (decimal string) and the payload. */
export interface BinaryEnvelope {
  id: string;
  data: ArrayBuffer;
}

/** Decode a v1 binary frame; null when it is not a message envelope. */
export function decodeBinaryEnvelope(frame: ArrayBuffer): BinaryEnvelope | null {
  if (frame.byteLength < HEADER) return null;
  const view = new DataView(frame);
  if (view.getUint8(0) !== BINARY_MESSAGE) return null;
  return { id: view.getBigUint64(1, false).toString(), data: frame.slice(HEADER) };
}

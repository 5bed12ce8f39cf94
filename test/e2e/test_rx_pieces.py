"""Client frames longer than the bridge's 128-byte rx buffer (WS_RX_BUFFER in
bridge/ws.h) reach it in pieces: messages are gathered whole, UTF-8 is checked
across the pieces, and control frames (at most 125 bytes) still arrive whole."""
import base64
import json
import os
import socket

from conftest import connect, recv_json, run, token
from test_routes import route


def frame(opcode, payload, fin=True):
    """One masked client frame."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def upgraded(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /?token={token('alice')} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    return s


def read_frame(s):
    """(opcode, payload) of the next server frame other than a text frame (the
    error frames of messages without a route); servers do not mask."""
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            assert chunk, "connection closed"
            data += chunk
        return data
    while True:
        b0, b1 = exactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(exactly(2), "big")
        elif n == 127:
            n = int.from_bytes(exactly(8), "big")
        payload = exactly(n)
        if b0 & 0x0F != 0x1:
            return b0 & 0x0F, payload


def test_long_messages_arrive_whole_in_one_frame_and_in_fragments(bridge, db):
    route(db, "echo", "SELECT m->'text'")
    # 10 bytes per repetition: 128-byte pieces end inside multi-byte characters
    text = "é€😀a" * 300

    async def go():
        ws = await connect(bridge, "alice")
        msg = json.dumps({"action": "echo", "text": text}, ensure_ascii=False)
        await ws.send(msg)
        assert await recv_json(ws) == text
        await ws.send([msg[i:i + 77] for i in range(0, len(msg), 77)])
        assert await recv_json(ws) == text
        await ws.close()
    run(go())


def test_utf8_is_checked_across_pieces_and_fragments(bridge):
    # a character split across two fragments is valid
    with upgraded(bridge.port) as s:
        s.sendall(frame(0x1, b'{"a": "' + b"x" * 200 + "€".encode()[:1], fin=False) +
                  frame(0x0, "€".encode()[1:] + b'"}') + frame(0x9, b"after"))
        assert read_frame(s) == (0xA, b"after")
    # an invalid byte far past the first piece is not
    with upgraded(bridge.port) as s:
        s.sendall(frame(0x1, b'{"a": "' + b"x" * 300 + b'\xff"}'))
        opcode, payload = read_frame(s)
        assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 1007


def test_control_frames_of_125_bytes_arrive_whole(bridge):
    with upgraded(bridge.port) as s:
        ping = bytes(range(125))
        s.sendall(frame(0x9, ping))
        assert read_frame(s) == (0xA, ping)
        reason = b"r" * 123
        s.sendall(frame(0x8, (1000).to_bytes(2, "big") + reason))
        assert read_frame(s) == (0x8, (1000).to_bytes(2, "big") + reason)

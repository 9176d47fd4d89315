"""The latency proxy the group tests rely on: it adds the round-trip time it
is given (per client id), keeps byte order, and keeps many chunks in flight
instead of one per delay."""

import socket
import struct
import threading
import time

import pytest

from latency_proxy import LatencyProxy


@pytest.fixture
def echo_port():
    """A TCP echo server on 127.0.0.1; one thread per connection."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns = []

    def serve(c):
        with c:
            while data := c.recv(65536):
                c.sendall(data)

    def accept():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            conns.append(c)
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()
    for c in conns:
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def kafka_header(client_id):
    """A request frame's start as a Kafka client sends it: size, key, version, correlation id, client id."""
    cid = client_id.encode()
    body = struct.pack(">hhih", 18, 3, 1, len(cid)) + cid
    return struct.pack(">i", len(body)) + body


def recv_exactly(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "connection closed early"
        buf += chunk
    return buf


def round_trip_s(port, client_id, payload=b"ping"):
    with socket.create_connection(("127.0.0.1", port)) as s:
        first = kafka_header(client_id)
        t = time.monotonic()
        s.sendall(first)
        recv_exactly(s, len(first))
        took = time.monotonic() - t
        s.sendall(payload)
        recv_exactly(s, len(payload))
    return took


def test_delay_depends_on_client_id(echo_port):
    proxy = LatencyProxy(lambda cid: 200 if cid == "slow" else 0, target_port=echo_port).start()
    try:
        slow = round_trip_s(proxy.port, "slow")
        near = round_trip_s(proxy.port, "near")
    finally:
        proxy.stop()
    assert 0.2 <= slow < 0.35, slow
    assert near < 0.05, near


def test_order_kept_and_chunks_pipelined(echo_port):
    """8 MiB sent in 64 KiB writes at 100 ms RTT: a proxy that released one
    chunk per delay would need 128 x 100 ms; this one needs about one RTT."""
    proxy = LatencyProxy(100, target_port=echo_port).start()
    total = 8 << 20
    data = bytes(i * 7 % 251 for i in range(total))
    got = bytearray()
    try:
        with socket.create_connection(("127.0.0.1", proxy.port)) as s:
            s.sendall(kafka_header("x"))
            recv_exactly(s, len(kafka_header("x")))
            t = time.monotonic()

            def send():
                for i in range(0, total, 65536):
                    s.sendall(data[i:i + 65536])

            sender = threading.Thread(target=send)
            sender.start()
            while len(got) < total:
                chunk = s.recv(1 << 20)
                assert chunk
                got += chunk
            took = time.monotonic() - t
            sender.join()
    finally:
        proxy.stop()
    assert bytes(got) == data
    print(f"\n8 MiB through 100 ms RTT in {took:.2f} s")
    assert 0.1 <= took < 3.0, took

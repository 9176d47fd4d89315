"""A TCP proxy for tests that adds network latency: every byte is held for
half the round-trip time in each direction. Order is preserved and throughput
is not cut to one chunk per delay: each chunk read is stamped with the time it
becomes due, queued, and written when due, so many chunks are in flight at once
(a link with latency, not a slow link).

The round-trip time can depend on who connects: `rtt_ms` may be a function of
the Kafka client id, read from the header of the first request on the
connection (every Kafka request header from v1 on carries it). That is how one
broker that advertises one address can have a slow member and near members in
the same group: every client comes back through the proxy, and each connection
gets its client's latency.

Not modelled: the TCP handshake itself is not delayed (the proxy accepts at
once), and there is no bandwidth limit or loss."""

import asyncio
import struct
import threading

# Bytes read from a socket at a time; a chunk is the unit of delay.
CHUNK_BYTES = 64 * 1024
# Chunks queued per direction before reading stops (backpressure): at most
# 64 MiB in flight per direction, far more than these tests put on the link.
QUEUE_CHUNKS = 1024
# The first request's header is at most 14 bytes + a client id of at most
# 32767 bytes; a peer that sends more without a complete header is not Kafka.
HEADER_MAX_BYTES = 14 + 32767


def parse_client_id(buf):
    """The client id in a Kafka request frame's header, None if it is null, or
    ... (Ellipsis) if `buf` does not hold the whole header yet."""
    # size i32 | api_key i16 | api_version i16 | correlation_id i32 | client_id: i16 length + bytes
    if len(buf) < 14:
        return ...
    (n,) = struct.unpack_from(">h", buf, 12)
    if n < 0:
        return None
    if len(buf) < 14 + n:
        return ...
    return buf[14:14 + n].decode("utf-8", "replace")


class LatencyProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to 127.0.0.1:`target_port`.

    `rtt_ms` is a number, or a function client_id -> number. Set `target_port`
    before clients connect (it may be set after `start()`, so a broker can be
    told to advertise the proxy's port)."""

    def __init__(self, rtt_ms=0, target_port=None):
        self.rtt_ms = rtt_ms
        self.target_port = target_port
        self.port = None
        self._loop = None
        self._server = None
        self._thread = None
        self._tasks = set()
        self._writers = set()

    def start(self):
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run():
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="latency-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("latency proxy did not start")
        return self

    def stop(self):
        if self._loop is None:
            return

        async def shutdown():
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def _rtt_for(self, client_id):
        return self.rtt_ms(client_id) if callable(self.rtt_ms) else self.rtt_ms

    async def _serve(self, client_r, client_w):
        task = asyncio.current_task()
        self._tasks.add(task)
        self._writers.add(client_w)
        server_w = None
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers.add(server_w)
            loop = asyncio.get_running_loop()
            # Read the first request's header to learn whose connection this is
            # (a Kafka server never speaks first, so nothing waits meanwhile).
            first = b""
            first_at = loop.time()
            client_id = None
            while True:
                parsed = parse_client_id(first)
                if parsed is not ...:
                    client_id = parsed
                    break
                if len(first) >= HEADER_MAX_BYTES:
                    break
                data = await client_r.read(CHUNK_BYTES)
                if not data:
                    break
                if not first:
                    first_at = loop.time()
                first += data
            one_way_s = self._rtt_for(client_id) / 2000.0
            up = _Direction(client_r, server_w, one_way_s, first, first_at)
            down = _Direction(server_r, client_w, one_way_s)
            parts = [asyncio.ensure_future(c) for c in (up.read(), up.write(), down.read(), down.write())]
            try:
                # Both directions end at EOF; a failure on either ends the connection.
                await asyncio.wait(parts, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for p in parts:
                    p.cancel()
                await asyncio.gather(*parts, return_exceptions=True)
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass  # stop(): this task is the connection's top level, nothing awaits it
        finally:
            for w in (client_w, server_w):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()
            self._tasks.discard(task)


class _Direction:
    """One direction of one connection: a reader that stamps chunks with their
    due time and a writer that sends each when due, in order."""

    def __init__(self, reader, writer, delay_s, first=b"", first_at=None):
        self.reader = reader
        self.writer = writer
        self.delay_s = delay_s
        self.first = first
        self.first_at = first_at
        self.queue = asyncio.Queue(QUEUE_CHUNKS)

    async def read(self):
        loop = asyncio.get_running_loop()
        try:
            if self.first:
                await self.queue.put((self.first_at + self.delay_s, self.first))
            while True:
                data = await self.reader.read(CHUNK_BYTES)
                # EOF travels with the same delay as data, as a FIN would.
                await self.queue.put((loop.time() + self.delay_s, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await self.queue.put((loop.time() + self.delay_s, None))

    async def write(self):
        loop = asyncio.get_running_loop()
        while True:
            due, data = await self.queue.get()
            wait_s = due - loop.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            if data is None:  # the peer reset: reset this side too
                self.writer.transport.abort()
                return
            if not data:
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                return
            self.writer.write(data)
            await self.writer.drain()

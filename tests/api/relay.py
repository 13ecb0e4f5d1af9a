"""A TCP relay between a client and the server, on an asyncio loop of its own thread, for
tests that put a faulty network in the way: a subclass answers each connection in
handle(reader, writer), forwarding with pump(), which can cut a direction short."""

import asyncio
import threading


class Relay:
    def __init__(self, target):
        self.target = target  # the server's port
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self.handle, "127.0.0.1", 0))
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(5)

    async def handle(self, reader, writer):
        raise NotImplementedError

    @staticmethod
    async def pump(src, dst, ends, limit=None, chunk=65536, delay=None):
        """Copies src to dst until src ends or, with a limit, until limit bytes went
        through; then closes both ends. Returns whether it cut the stream at the limit.
        delay(): seconds to wait before each write (None: none)."""
        sent, cut = 0, False
        try:
            while data := await src.read(chunk):
                if limit is not None and sent + len(data) >= limit:
                    dst.write(data[:limit - sent])
                    await dst.drain()
                    cut = True
                    break
                if delay:
                    await asyncio.sleep(delay())
                dst.write(data)
                await dst.drain()
                sent += len(data)
        except OSError:
            pass
        finally:
            for w in ends:
                w.close()
        return cut

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

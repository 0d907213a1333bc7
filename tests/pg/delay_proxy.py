#!/usr/bin/env python3
"""A TCP proxy that delays every byte by a fixed time in each direction.

    delay_proxy.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS

tests/pg/netns.sh uses it for its latency scenario where the kernel has no `sch_netem` (as on
the machine this project is developed on): the worker hosts reach the server through it, so
each round trip gains 2 x DELAY_MS, as `tc netem delay DELAY_MS` on both ends of a link would
give. Bytes keep their order and are never merged across the delay; bandwidth is not limited.
Prints "listening" on stdout once it accepts connections; runs until killed.
"""

import asyncio
import sys


async def pipe(reader, writer, delay):
    """Copies reader to writer, each chunk sent `delay` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def send():
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(65536)
            await queue.put((loop.time() + delay, data))
            if not data:
                break
    except (ConnectionError, OSError):
        await queue.put((loop.time() + delay, b""))
    await sender


async def main():
    listen_host, listen_port, target_host, target_port, delay_ms = sys.argv[1:6]
    delay = int(delay_ms) / 1000.0

    async def serve(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(target_host, int(target_port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, server_writer, delay),
            pipe(server_reader, client_writer, delay),
        )

    server = await asyncio.start_server(serve, listen_host, int(listen_port))
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    asyncio.run(main())

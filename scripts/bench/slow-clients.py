# Slow clients for scripts/bench/slow-clients.sh: opens N connections from 127.0.0.1 that trickle
# a request head (one header line every 2 s) and reopens those the server closes, for DURATION s.
#   python3 slow-clients.py PORT N DURATION
import asyncio, os, sys, time

port, n, duration = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
stats = {"opened": 0, "closed_by_server": 0, "refused_or_reset": 0}


async def slow():
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            stats["opened"] += 1
            writer.write(b"GET /healthz HTTP/1.1\r\n")
            while not reader.at_eof():
                await asyncio.sleep(2)
                writer.write(b"x-slow: 1\r\n")
                await writer.drain()
            stats["closed_by_server"] += 1
            writer.close()
        except Exception:
            stats["refused_or_reset"] += 1
            await asyncio.sleep(0.5)


async def main():
    for _ in range(n):
        asyncio.create_task(slow())
    await asyncio.sleep(duration)
    print("slow clients:", stats, flush=True)
    os._exit(0)


asyncio.run(main())

#!/usr/bin/env python3
"""A loopback SMTP destination for bench/queue-bench.sh.

usage: defer-sink.py PORT LOG FLAG
Answers 451 at the end of DATA to every message while the file FLAG does not exist, and
250 once it does. Appends one line per transaction to LOG: "<unix ms> D" (deferred) or
"<unix ms> A" (accepted). Binds 127.0.0.1 only.
"""
import asyncio
import os
import sys
import time

PORT, LOG, FLAG = int(sys.argv[1]), sys.argv[2], sys.argv[3]
log = open(LOG, "a", buffering=1)


async def session(reader, writer):
    w = writer.write
    w(b"220 defer-sink ESMTP\r\n")
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                w(b"250-defer-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                w(b"354 go ahead\r\n")
                await writer.drain()
                while True:
                    l = await reader.readline()
                    if not l or l in (b".\r\n", b".\n"):
                        break
                accept = os.path.exists(FLAG)
                log.write("%d %s\n" % (time.time() * 1000, "A" if accept else "D"))
                w(b"250 2.0.0 ok\r\n" if accept else b"451 4.3.0 try again later\r\n")
            elif verb == b"QUIT":
                w(b"221 bye\r\n")
                break
            else:
                w(b"250 ok\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    writer.close()


async def main():
    server = await asyncio.start_server(session, "127.0.0.1", PORT, backlog=512)
    async with server:
        await server.serve_forever()


asyncio.run(main())

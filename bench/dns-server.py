#!/usr/bin/env python3
"""A tiny DNS server for the benchmark, on 127.0.0.1 only (UDP and TCP).

usage: dns-server.py PORT

It publishes what a real sender domain would for the bench's senders (NAME@real.test, sent
from 127.0.0.1): SPF allowing 127.0.0.1 and DMARC p=reject, so the remailer's inbound
SPF/DKIM/DMARC checks run for real (an aligned SPF pass gives a DMARC pass). Every other
name gets NXDOMAIN.
"""
import sys
import time

from dnslib import QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSServer

RECORDS = {
    "real.test.": [("TXT", "v=spf1 ip4:127.0.0.1 -all")],
    "_dmarc.real.test.": [("TXT", "v=DMARC1; p=reject")],
}


class Resolver(BaseResolver):
    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).lower()
        records = RECORDS.get(name)
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for rtype, value in records:
            if rtype == QTYPE[request.q.qtype]:
                reply.add_answer(RR(name, QTYPE.TXT, rdata=TXT(value), ttl=3600))
        return reply


def main():
    port = int(sys.argv[1])
    for tcp in (False, True):
        DNSServer(Resolver(), address="127.0.0.1", port=port, tcp=tcp).start_thread()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()

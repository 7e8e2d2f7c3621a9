#!/usr/bin/env python3
"""Verify every DKIM-Signature of a message with dkimpy, an implementation independent of ours.

Usage: dkim_verify.py MESSAGE_FILE ZONE_FILE
       dkim_verify.py --batch ZONE_FILE MESSAGE_FILE...

The public keys come only from ZONE_FILE: the zone-file lines that `remailer dns` prints
(`NAME. TTL IN TXT "part" "part"...`), fed to dkimpy through its `dnsfunc` hook, so nothing is
looked up on the network and the check uses exactly what an operator would publish.

Prints one line per signature, `<index> <a=> <d=> <s=> ok|FAIL`, and exits 0 when there is at
least one signature and all of them verify, 1 otherwise, 2 on a usage or input error.

With --batch, every message is checked in the one process and one JSON line is printed per
message, `{"file": ..., "ok": true|false, "report": "..."}`; the exit code is 0 when they
could all be checked (whatever the results), 2 otherwise.
"""

import io
import json
import re
import sys
from contextlib import redirect_stderr, redirect_stdout

import dkim


def parse_zone(text):
    """Maps lower-case owner names (with trailing dot) to the TXT values published there."""
    records = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        fields = line.split(None, 4)
        if len(fields) < 5 or fields[2] != "IN" or fields[3] != "TXT":
            continue
        parts = re.findall(r'"((?:[^"\\]|\\.)*)"', fields[4])
        value = "".join(re.sub(r"\\(.)", r"\1", p) for p in parts)
        name = fields[0].lower()
        if not name.endswith("."):
            name += "."
        records.setdefault(name, []).append(value)
    return records


def make_dnsfunc(records):
    def dnsfunc(name, timeout=5):
        key = name.decode() if isinstance(name, bytes) else name
        values = records.get(key.lower(), [])
        return values[0].encode() if values else None

    return dnsfunc


def signature_tags(message, index):
    d = dkim.DKIM(message)
    headers = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
    tags = dkim.util.parse_tag_value(headers[index])
    return tags.get(b"a", b"?").decode(), tags.get(b"d", b"?").decode(), tags.get(b"s", b"?").decode()


def batch(zone_file, message_files):
    with open(zone_file, encoding="utf-8") as f:
        dnsfunc = make_dnsfunc(parse_zone(f.read()))
    for name in message_files:
        with open(name, "rb") as f:
            message = f.read()
        report = io.StringIO()
        with redirect_stdout(report), redirect_stderr(report):
            try:
                ok = verify_all(message, dnsfunc) == 0
            except Exception as e:  # a message dkimpy cannot even read did not verify
                print(f"dkim_verify.py: {type(e).__name__}: {e}")
                ok = False
        print(json.dumps({"file": name, "ok": ok, "report": report.getvalue()}))
    return 0


def main(argv):
    if len(argv) >= 3 and argv[1] == "--batch":
        return batch(argv[2], argv[3:])
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], "rb") as f:
        message = f.read()
    with open(argv[2], encoding="utf-8") as f:
        dnsfunc = make_dnsfunc(parse_zone(f.read()))
    return verify_all(message, dnsfunc)


def verify_all(message, dnsfunc):
    count = len(re.findall(rb"(?im)^dkim-signature:", message.split(b"\r\n\r\n", 1)[0]))
    if count == 0:
        print("no DKIM-Signature header", file=sys.stderr)
        return 1
    all_ok = True
    for index in range(count):
        a, d, s = signature_tags(message, index)
        try:
            ok, why = dkim.DKIM(message).verify(idx=index, dnsfunc=dnsfunc), ""
        except dkim.DKIMException as e:  # dkimpy raises for e.g. a body hash mismatch
            ok, why = False, f" ({e})"
        all_ok &= bool(ok)
        print(f"{index} {a} {d} {s} {'ok' if ok else 'FAIL'}{why}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception as e:  # a crash must never read as "signature failed"
        print(f"dkim_verify.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)

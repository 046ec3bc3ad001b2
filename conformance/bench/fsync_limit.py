#!/usr/bin/env python3
"""The data disk's durable-write limit: append 512 bytes + fdatasync in a loop for N seconds.

Usage: fsync_limit.py DIR [SECONDS]. Prints fdatasyncs per second.
"""
import os
import sys
import time

directory = sys.argv[1]
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
path = os.path.join(directory, "fsync-probe.log")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
payload = b"x" * 512
count = 0
start = time.perf_counter()
try:
    while time.perf_counter() - start < seconds:
        os.write(fd, payload)
        os.fdatasync(fd)
        count += 1
finally:
    os.close(fd)
    os.unlink(path)
print(f"{count / (time.perf_counter() - start):.0f}")

#!/usr/bin/env python3
"""What one caller's history would cost in Redis under other key/value layouts (MEMORY USAGE, Redis on
127.0.0.1:6379 db 0). Writes synthetic keys under a unique prefix and deletes them. Standard library only.

    python3 scripts/bench/redis-layout.py [callers-per-layout]
"""
import os
import socket
import sys

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
PREFIX = f"saring-bench-layout-{os.getpid()}".encode()
sock = socket.create_connection(("127.0.0.1", 6379))
reader = sock.makefile("rb")


def command(*args):
    out = b"*%d\r\n" % len(args)
    for arg in args:
        arg = arg if isinstance(arg, bytes) else str(arg).encode()
        out += b"$%d\r\n%s\r\n" % (len(arg), arg)
    sock.sendall(out)
    return reply()


def reply():
    line = reader.readline()
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b"-"):
        return rest
    if kind == b":":
        return int(rest)
    if kind == b"$":
        length = int(rest)
        return None if length < 0 else reader.read(length + 2)[:-2]
    if kind == b"*":
        return [reply() for _ in range(int(rest))]
    raise RuntimeError(line)


def used_memory():
    info = command("INFO", "memory").decode()
    return int(next(line for line in info.splitlines() if line.startswith("used_memory:")).split(":")[1])


TTL = 180 * 86400
layouts = {
    "today: 'saring:v1:n:{<64 hex>}', 40 f64 (320 B), TTL": lambda i: (
        b"saring:v1:n:{" + os.urandom(32).hex().encode() + b"}", os.urandom(320), True),
    "same key, counters as f32 (36x4 + 4x8 = 176 B), TTL": lambda i: (
        b"saring:v1:n:{" + os.urandom(32).hex().encode() + b"}", os.urandom(176), True),
    "binary 16-byte hash key 'n:<16 B>', 176 B value, TTL": lambda i: (b"n:" + os.urandom(16), os.urandom(176), True),
    "binary 16-byte hash key, 176 B value, no TTL": lambda i: (b"n:" + os.urandom(16), os.urandom(176), False),
}
print(f"Redis {command('INFO', 'server').decode().split('redis_version:')[1].split()[0]}, {N} keys per layout")
print("| layout | MEMORY USAGE per key | used_memory delta per key |")
print("|---|---|---|")
for name, make in layouts.items():
    before = used_memory()
    keys = []
    for i in range(N):
        key, value, ttl = make(i)
        key = PREFIX + b":" + key
        keys.append(key)
        if ttl:
            command("SET", key, value, "EX", TTL)
        else:
            command("SET", key, value)
    delta = (used_memory() - before) / N
    usage = sum(command("MEMORY", "USAGE", key, "SAMPLES", "0") for key in keys[:200]) / 200
    for start in range(0, len(keys), 500):
        command("UNLINK", *keys[start:start + 500])
    print(f"| {name} | {usage:.0f} | {delta:.0f} |")

#!/usr/bin/env python3
"""Test-only forward proxy, as a site's egress proxy would be: CONNECT tunnels (https) and
absolute-form requests (plain http). Each request's target is appended to LOG, one line each,
so a test can tell whether a client went through the proxy.

usage: connect_proxy.py PORT LOG
"""
import socket
import sys
import threading

PORT, LOG = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()


def log(line):
    with lock:
        with open(LOG, "a") as f:
            f.write(line + "\n")


def pipe(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def handle(client):
    head = b""
    while b"\r\n\r\n" not in head:
        data = client.recv(4096)
        if not data:
            client.close()
            return
        head += data
        if len(head) > 65536:
            client.close()
            return
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    method, target, _ = request_line.split(" ", 2)
    log(f"{method} {target}")
    if method == "CONNECT":
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        rest = head.split(b"\r\n\r\n", 1)[1]
        if rest:
            upstream.sendall(rest)
    else:
        # http://host:port/path -> origin form, sent to that host.
        without = target.split("://", 1)[1]
        hostport, _, path = without.partition("/")
        host, _, port = hostport.partition(":")
        upstream = socket.create_connection((host, int(port or 80)))
        upstream.sendall(head.replace(target.encode("latin-1"), b"/" + path.encode("latin-1"), 1))
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
    pipe(client, upstream)


server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", PORT))
server.listen(64)
while True:
    conn, _ = server.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()

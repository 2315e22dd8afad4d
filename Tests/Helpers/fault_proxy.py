#!/usr/bin/env python3
"""Test-only HTTP proxy in front of a real server that injects faults into responses.

usage: fault_proxy.py PORT UPSTREAM_PORT MODE [COUNT]
MODE: drop (close mid-body), corrupt (flip a byte of range bodies), truncate (short body with
full Content-Length, then close), ignore-range (answer 200 with the whole file), oversize
(send more than the range asked for), redirect-loop, error500 (answer 500), trickle (send the
range body one byte every 0.2 s), freeze-manifest (answer every conditional GET of
manifest.json with 304, as a server keeping a device on an old manifest would), shift-range
(answer a range request with the range one byte further on, Content-Range and all),
redirect-writes (answer every PUT, POST and DELETE with a 307 to this proxy's /sink/, which
takes anything with a 200 and logs "SINK METHOD PATH BYTES auth=yes|no", whether an
Authorization header came with it), repeat-token and endless-list
(answer every S3 ListObjectsV2 with a truncated page: the same continuation token each time,
or a new one each time), swallow-manifest (answer a PUT of manifest.json with 200 without
passing it on), cut-every (a flaky link: the connection is cut each time the body bytes sent to
clients, all GETs counted, pass another FAULT_PROXY_CUT_EVERY bytes (default 2 MiB); COUNT
cuts in all). Other methods pass through. Request
headers, Host included, pass through as sent, so a signed request (S3 SigV4) stays valid behind
the proxy. With FAULT_PROXY_LOG set, each range request's path and Range header are appended
to that file, one line each. With FAULT_PROXY_SENT set, the body bytes sent for GETs so far and the
cuts made are written to that file ("BYTES CUTS") after each response.
A MODE prefixed "tree-" or "index-" (tree-corrupt, index-truncate, ...) spoils whole-file
answers instead of range bodies: those holding a tree object (by its magic) or a pack index.
COUNT: how many range responses to spoil (default: all); metadata requests pass through.
"""
import http.client
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import threading
import time

PORT, UPSTREAM, MODE = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
# What a spoiling mode aims at: range bodies of packs, or whole tree objects or pack indexes.
TARGET, _, BASE = MODE.partition("-") if MODE.split("-")[0] in ("tree", "index") else ("range", "", MODE)
COUNT = int(sys.argv[4]) if len(sys.argv) > 4 else 1 << 30
lock = threading.Lock()
spoiled = 0
CUT_EVERY = int(os.environ.get("FAULT_PROXY_CUT_EVERY") or 2 << 20)
sent = 0
next_cut = CUT_EVERY


def account(n, may_cut):
    """Counts `n` body bytes about to be sent; returns how many to send before a cut (or n)."""
    global sent, next_cut, spoiled
    with lock:
        send = n
        if may_cut and spoiled < COUNT and sent + n > next_cut:
            send = next_cut - sent
            spoiled += 1
            next_cut += CUT_EVERY
        sent += send
        if os.environ.get("FAULT_PROXY_SENT"):
            with open(os.environ["FAULT_PROXY_SENT"], "w") as f:
                f.write(f"{sent} {spoiled}\n")
        return send


def take():
    global spoiled
    with lock:
        if spoiled >= COUNT:
            return False
        spoiled += 1
        return True


HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def forward(self, method):
        """Passes a request with its body through unchanged (writes, HEAD)."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/sink/"):
            if os.environ.get("FAULT_PROXY_LOG"):
                with lock, open(os.environ["FAULT_PROXY_LOG"], "a") as log:
                    auth = "yes" if self.headers.get("Authorization") else "no"
                    log.write(f"SINK {method} {self.path} {len(body)} auth={auth}\n")
            self.send_response(200)
            self.send_header("ETag", '"0"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if MODE == "swallow-manifest" and method == "PUT" and self.path.split("?")[0].endswith("/manifest.json"):
            self.send_response(200)
            self.send_header("ETag", '"0"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if MODE == "redirect-writes" and method in ("PUT", "POST", "DELETE"):
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{PORT}/sink{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=30)
        conn.putrequest(method, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items():
            if k.lower() not in HOP_BY_HOP:
                conn.putheader(k, v)
        conn.endheaders()
        if body:
            conn.send(body)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    def do_PUT(self):
        self.forward("PUT")

    def do_POST(self):
        self.forward("POST")

    def do_DELETE(self):
        self.forward("DELETE")

    def do_HEAD(self):
        self.forward("HEAD")

    def do_GET(self):
        global spoiled
        if MODE in ("repeat-token", "endless-list") and "list-type=2" in self.path:
            with lock:
                spoiled += 1
                token = "same" if MODE == "repeat-token" else f"t{spoiled}"
            page = (f"<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>true</IsTruncated>"
                    f"<Contents><Key>store/x{spoiled}</Key></Contents>"
                    f"<NextContinuationToken>{token}</NextContinuationToken></ListBucketResult>").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        is_range = "Range" in self.headers and ".pack" in self.path
        conditional = "If-None-Match" in self.headers or "If-Modified-Since" in self.headers
        if MODE == "freeze-manifest" and self.path.endswith("manifest.json") and conditional:
            self.send_response(304)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if MODE == "redirect-loop" and is_range:
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if is_range and os.environ.get("FAULT_PROXY_LOG"):
            with lock, open(os.environ["FAULT_PROXY_LOG"], "a") as log:
                log.write(f"{self.path} {self.headers['Range']}\n")
        drop_range = MODE == "ignore-range" and is_range and take()
        shift_range = MODE == "shift-range" and is_range and take()
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=30)
        conn.putrequest("GET", self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items():
            if k.lower() in HOP_BY_HOP or (drop_range and k.lower() == "range"):
                continue
            if shift_range and k.lower() == "range":
                start, end = v.split("=")[1].split("-")
                v = f"bytes={int(start) + 1}-{int(end) + 1}"
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        status = resp.status
        out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in ("content-length", "connection", "transfer-encoding")]
        conn.close()
        whole = "Range" not in self.headers and status == 200
        aimed = {"range": is_range, "tree": whole and body.startswith(b"SLMTREE\0"), "index": whole and self.path.endswith(".idx")}[TARGET]
        spoil = aimed and BASE in ("drop", "corrupt", "truncate", "oversize", "error500", "trickle") and take()
        if spoil and BASE == "error500":
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if spoil and BASE == "corrupt" and len(body) > 40:
            b = bytearray(body)
            b[len(b) // 2] ^= 0x55
            body = bytes(b)
        declared = len(body)
        if spoil and BASE == "oversize":
            body = body + b"\0" * 1024
            declared = len(body)
        self.send_response(status)
        for k, v in out_headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(declared))
        self.end_headers()
        keep = account(len(body), MODE == "cut-every")
        if keep < len(body):
            self.wfile.write(body[:keep])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        if spoil and BASE in ("drop", "truncate"):
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        if spoil and BASE == "trickle":
            for i in range(len(body)):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                time.sleep(0.2)
            return
        self.wfile.write(body)


ThreadingHTTPServer.allow_reuse_address = True
server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("ready", flush=True)
server.serve_forever()

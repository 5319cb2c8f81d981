"""The Python programs sumo-k8's pods run (the image has python3), as text for ``python3 -c``.

Each streams what it handles in blocks, so a pod holds a few MiB whatever the size of a job's files:

* :data:`UNPACK_SCRIPT` (the simulation pod's init container) joins the input chunks into one file on the PVC
  and unpacks it member by member, recording each input's sha256 and size;
* :data:`RUN_SCRIPT` (the simulation's main container) runs SUMO beside its inputs, copies its console to the pod
  log and to ``sumo.log``, and stops it once its outputs pass MAX_OUTPUT_MB or its console MAX_LOG_MB, saying so
  in the container's termination message; a run that fails leaves its console's last lines there instead;
* :data:`COLLECT_SCRIPT` (the collector pod) uploads every output, the log and the statistics to the API, one
  ``PUT`` per file with the job's token, and prints one manifest line of what it sent.

They are unit-tested by running them on this machine (``tests/unit/test_k8s_manifests.py``).
"""
from __future__ import annotations

#: The exit code of a run stopped at a cap (SUMO's own are 0 and 1).
CAP_EXIT_CODE = 3
#: A failed run's termination message: its console's last lines, within the kubelet's 4096 bytes per message.
TAIL_LINES, TAIL_BYTES = 20, 3072
#: How a collector's manifest line starts (its last line of output).
MANIFEST_PREFIX = "SUMO-K8-MANIFEST "

UNPACK_SCRIPT = """\
import hashlib, json, os, shutil, zipfile
d = os.environ["JOB_DIR"]; run = d + "/run"
shutil.rmtree(d, ignore_errors=True); os.makedirs(run)
joined = d + "/.input.zip"
with open(joined, "wb") as out:
    for i in range(int(os.environ["CHUNKS"])):
        with open("/input/%d/part" % i, "rb") as part:
            shutil.copyfileobj(part, out, 1 << 20)
inputs = {}
with zipfile.ZipFile(joined) as zf:
    for info in zf.infolist():
        if info.is_dir(): continue
        path = os.path.join(run, info.filename); os.makedirs(os.path.dirname(path), exist_ok=True)
        h = hashlib.sha256(); size = 0
        with zf.open(info) as src, open(path, "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                h.update(block); dst.write(block); size += len(block)
        inputs[info.filename] = {"sha256": h.hexdigest(), "size": size}
os.remove(joined)
with open(d + "/inputs.json", "w") as fh: json.dump(inputs, fh)
"""

RUN_SCRIPT = """\
import os, shutil, signal, subprocess, sys, threading, time
d = os.environ["JOB_DIR"]; run = d + "/run"; config = os.environ["CONFIG"]; log_file = os.environ.get("LOG_FILE", "")
out_mb, log_mb = int(os.environ["MAX_OUTPUT_MB"]), int(os.environ["MAX_LOG_MB"])
max_out, max_log = out_mb << 20, log_mb << 20
stats = d + "/sumo-statistics.xml"
def tree_size(top):
    total = 0
    for root, dirs, names in os.walk(top):
        for n in names:
            try: total += os.lstat(os.path.join(root, n)).st_size
            except OSError: pass
    return total
baseline = tree_size(run)
argv = ["sumo", "-c", os.path.basename(config), "--statistic-output", stats, "--duration-log.statistics", "true"]
if log_file: argv += ["--log", "/dev/stdout"]
sumo = subprocess.Popen(argv, cwd=os.path.join(run, os.path.dirname(config)), stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
signal.signal(signal.SIGTERM, lambda *_: sumo.terminate())
stopped = []
def stop(why):
    if not stopped:
        stopped.append(why); sumo.kill()
logged = 0
def outputs():
    size = tree_size(run) - baseline + (logged if log_file else 0)
    try: size += os.path.getsize(stats)
    except OSError: pass
    return size
def watch():
    while sumo.poll() is None:
        if outputs() > max_out:
            stop("MAX_OUTPUT_MB: the run wrote more than %d MB into its run directory; it was stopped" % out_mb)
            return
        time.sleep(0.5)
threading.Thread(target=watch, daemon=True).start()
out = sys.stdout.buffer
with open(d + "/sumo.log", "wb", buffering=0) as log:
    while True:
        chunk = os.read(sumo.stdout.fileno(), 1 << 16)
        if not chunk: break
        if logged + len(chunk) > max_log:
            chunk = chunk[:max_log - logged]
            stop("MAX_LOG_MB: the run printed more than %d MB to its console; it was stopped" % log_mb)
        log.write(chunk); out.write(chunk); out.flush(); logged += len(chunk)
        if stopped: break
code = sumo.wait()
if not stopped and outputs() > max_out:  # written since the last look (the log's copy below counted in)
    stopped.append("MAX_OUTPUT_MB: the run wrote more than %d MB into its run directory" % out_mb)
if log_file:
    target = os.path.join(run, log_file); os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(d + "/sumo.log", target)
def tell(text):
    try:
        with open(os.environ.get("TERMINATION_LOG", "/dev/termination-log"), "w") as fh: fh.write(text)
    except OSError: pass
if stopped:
    tell(stopped[0])
    sys.exit(CAP_EXIT_CODE)
if code != 0:  # the console's last lines: the pod may be gone before anyone reads its log
    size = os.path.getsize(d + "/sumo.log")
    with open(d + "/sumo.log", "rb") as fh:
        fh.seek(max(0, size - TAIL_BYTES)); tail = fh.read().replace(b"\\r\\n", b"\\n").replace(b"\\r", b"\\n")
    lines = tail.split(b"\\n")[1 if size > TAIL_BYTES else 0:]
    tell(b"\\n".join([ln for ln in lines if ln.strip()][-TAIL_LINES:]).decode("utf-8", "replace"))
sys.exit(code if code >= 0 else 128 - code)
""".replace("CAP_EXIT_CODE", str(CAP_EXIT_CODE)).replace("TAIL_BYTES", str(TAIL_BYTES)).replace("TAIL_LINES", str(TAIL_LINES))

COLLECT_SCRIPT = """\
import hashlib, json, os, resource, socket, ssl, stat, sys, time, urllib.parse
d = os.environ["JOB_DIR"]; run = d + "/run"; job = os.environ["JOB_ID"]; token = os.environ["COLLECT_TOKEN"]
url = urllib.parse.urlsplit(os.environ["COLLECT_URL"])
max_out, max_log = int(os.environ["MAX_OUTPUT_MB"]) << 20, int(os.environ["MAX_LOG_MB"]) << 20
max_files, max_manifest = int(os.environ["MAX_FILES"]), int(os.environ["MAX_MANIFEST_BYTES"])
RESERVED = ("sumo.log", "sumo-statistics.xml")
try:
    with open(d + "/inputs.json") as fh: inputs = json.load(fh)
except (OSError, ValueError): inputs = {}
files, skipped, skipped_count = [], [], 0
used, manifest_bytes = 0, 0
def skip(name, why):
    global skipped_count
    skipped_count += 1
    if len(skipped) < 100: skipped.append([name, why])
def sha256_of(fd):
    h = hashlib.sha256(); os.lseek(fd, 0, 0)
    for b in iter(lambda: os.read(fd, 1 << 20), b""): h.update(b)
    return h.hexdigest()
def unchanged(rel, fd, size):
    known = inputs.get(rel)
    if isinstance(known, dict):
        if known.get("size") != size: return False
        known = known.get("sha256")
    return known is not None and sha256_of(fd) == known
def head(f):
    line = f.readline(65537)
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"): raise OSError("not an HTTP answer: %r" % line[:200])
    headers = {}
    while True:
        h = f.readline(65537)
        if h in (b"\\r\\n", b"\\n", b""): break
        k, _, v = h.decode("latin-1").partition(":"); headers[k.strip().lower()] = v.strip()
    return int(parts[1]), headers
def put(name, fd, size):
    # One attempt: Expect 100-continue, so a refusal comes before the body is sent.
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    path = "%s/internal/jobs/%s/files/%s" % (url.path.rstrip("/"), job, urllib.parse.quote(name, safe="/"))
    sock = socket.create_connection((host, port), timeout=120)
    try:
        if url.scheme == "https": sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        sock.sendall(("PUT %s HTTP/1.1\\r\\nHost: %s\\r\\nAuthorization: Bearer %s\\r\\nContent-Type: "
                      "application/octet-stream\\r\\nContent-Length: %d\\r\\nExpect: 100-continue\\r\\n"
                      "Connection: close\\r\\n\\r\\n" % (path, url.netloc, token, size)).encode("latin-1"))
        f = sock.makefile("rb")
        status, headers = head(f)
        h = hashlib.sha256()
        if status == 100:
            os.lseek(fd, 0, 0); sent = 0
            while sent < size:
                b = os.read(fd, min(1 << 20, size - sent))
                if not b: raise OSError("%s shrank while it was sent" % name)
                h.update(b); sock.sendall(b); sent += len(b)
            status, headers = head(f)
        body = f.read(min(int(headers.get("content-length") or 65536), 65536))
        return status, body, h.hexdigest()
    finally:
        sock.close()
def upload(name, fd, size):
    last = None
    for attempt in range(8):
        if attempt: time.sleep(min(2 ** attempt, 30))
        try: status, body, digest = put(name, fd, size)
        except (OSError, ValueError) as exc:
            last = repr(exc); continue
        if status == 200:
            try: got = json.loads(body)
            except ValueError: got = {}
            if got.get("sha256") == digest and got.get("size") == size:
                return digest
            last = "%s arrived as %r, sent %s" % (name, got, digest); continue
        if status in (413, 422):  # past a cap, or a name the API takes for unsafe: that file is left out
            skip(name, body.decode("utf-8", "replace")[:300]); return None
        if status in (429, 500, 502, 503, 504):
            last = "%d %s" % (status, body[:300]); continue
        sys.exit("collector: the upload of %s was refused: %d %s" % (name, status, body[:1000].decode("utf-8", "replace")))
    sys.exit("collector: the upload of %s failed: %s" % (name, last))
def send(name, path, top):
    global used, manifest_bytes
    try: fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        if os.path.lexists(path): skip(name, "not a regular file")
        return
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode): return skip(name, "not a regular file")
        size = st.st_size
        if not top and unchanged(name, fd, size): return
        if not top and name in RESERVED: return skip(name, "a reserved name (the job's own log or statistics)")
        if len(files) >= max_files: return skip(name, "more than %d files" % max_files)
        if name == "sumo.log":
            if size > max_log: return skip(name, "past MAX_LOG_MB")
        elif used + size > max_out: return skip(name, "past MAX_OUTPUT_MB")
        entry = len(json.dumps([name, size, "0" * 64])) + 2
        if manifest_bytes + entry > max_manifest: return skip(name, "the manifest is full")
        digest = upload(name, fd, size)
        if digest is None: return
        if name != "sumo.log": used += size
        manifest_bytes += entry
        files.append([name, size, digest])
    finally:
        os.close(fd)
for n in RESERVED[::-1]:
    send(n, os.path.join(d, n), True)
for root, dirs, names in os.walk(run):
    dirs.sort()
    for n in sorted(names):
        p = os.path.join(root, n); rel = os.path.relpath(p, run)
        try: rel.encode("utf-8")
        except UnicodeEncodeError:
            skip(rel.encode("utf-8", "replace").decode(), "a name that is not UTF-8"); continue
        if "\\\\" in rel or any(ord(c) < 32 or ord(c) == 127 for c in rel):
            skip(rel, "a name with a backslash or a control character"); continue
        send(rel, p, False)
def peak_rss_kib():
    # VmHWM: this program's peak (ru_maxrss would count the process it was forked from before its exec)
    try:
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sys.stdout.write(MANIFEST_PREFIX + json.dumps({"files": files, "skipped": skipped, "skipped_count": skipped_count,
    "max_rss_kib": peak_rss_kib()}, separators=(",", ":")) + "\\n")
""".replace("MANIFEST_PREFIX", repr(MANIFEST_PREFIX))

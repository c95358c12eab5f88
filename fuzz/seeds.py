#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/ from the test fixtures.

The format seeds are the string literals of the format tables and the
integration tests (tests/, fake-safe/), sorted by shape; the PEM seeds are
certificates and keys made here with openssl (one CA, a leaf and its EC and
RSA keys, valid ten years from the day they were made, so the checks at the fuzz clock pass); the Safe
responses follow fake-safe's answer table; the SPIFFE-ID and CLI seeds are
the tests' values. Seeds with a secret value carry the canary
(fuzz-props' CANARY). Run from the repository root: python3 fuzz/seeds.py
"""
import hashlib, os, re, subprocess, tempfile, glob

CANARY = "zqCANARYqz"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
LIMIT = 40  # seeds per target taken from literals

def literals(path):
    text = open(path, encoding="utf-8").read()
    out = [m.group(1) for m in re.finditer(r'r#"(.*?)"#', text, re.S)]
    for m in re.finditer(r'(?<![r#\w])"((?:[^"\\\n]|\\.|\\\n)*)"', text):
        s = m.group(1)
        s = re.sub(r'\\\n\s*', '', s)
        s = re.sub(r'\\u\{([0-9a-fA-F]+)\}', lambda u: chr(int(u.group(1), 16)), s)
        s = (s.replace('\\n', '\n').replace('\\t', '\t').replace('\\r', '\r')
              .replace('\\"', '"').replace("\\'", "'").replace('\\0', '\0').replace('\\\\', '\\'))
        out.append(s)
    return out

def shape(s):
    t = s.strip()
    if not t or len(s) > 4096:
        return None
    if "-----BEGIN" in s:
        return None
    if t[0] in "{[" and any(c in t for c in '":'):
        return "format_json"
    lines = [l.strip() for l in t.splitlines() if l.strip() and not l.strip().startswith("#")]
    if lines and all(re.match(r'^(export\s+)?[A-Za-z_][\w.-]*\s*=', l) for l in lines):
        return "format_env"
    if "\n" in s and re.search(r'^\s*[\w./-]+:\s', s, re.M):
        return "format_yaml"
    return None

def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    open(os.path.join(d, name), "wb").write(data)

def format_seeds():
    files = sorted(glob.glob(os.path.join(ROOT, "tests", "*.rs")) +
                   glob.glob(os.path.join(ROOT, "src", "check", "*.rs")) +
                   glob.glob(os.path.join(ROOT, "fake-safe", "src", "*.rs")))
    seen = {}
    for f in files:
        for s in literals(f):
            t = shape(s)
            if t:
                seen.setdefault(t, {})[s] = True
    for t, strings in seen.items():
        for s in sorted(strings, key=lambda x: (len(x), x))[:LIMIT]:
            write(t, s)
    # Secret values carry the canary; a few shapes each parser finds hard.
    for s in ['{"username":"admin","password":"%s","db":{"password":"%s"}}' % (CANARY, CANARY),
              '["{\\"username\\":\\"u\\"}", "%s"]' % CANARY, '{"a":1e400,"b":"%s"}' % CANARY,
              '{"%s":' % CANARY, '{"a":"\\ud800%s"}' % CANARY]:
        write("format_json", s)
    for s in ["username: admin\npassword: %s\ndb:\n  password: %s\n" % (CANARY, CANARY),
              "a: &x [%s, *x]\n" % CANARY, "- !!binary %s\n" % CANARY,
              "key: |\n  %s\n  more\n" % CANARY, "? [a, b]\n: %s\n" % CANARY,
              "a: &a [x]\nb: &b [*a, *a]\nc: [*b, *b]\n", "%s: [\n" % CANARY]:
        write("format_yaml", s)
    for s in ['export PASSWORD="%s\\n%s"\nUSER=\'%s\'\n' % (CANARY, CANARY, CANARY),
              "DB_PASSWORD=%s\n# c\n\nA.B-C=1\n" % CANARY, 'TOKEN="%s\n' % CANARY,
              "1BAD=%s\n" % CANARY, "<no value>\n"]:
        write("format_env", s)

def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def pem_seeds():
    with tempfile.TemporaryDirectory() as d:
        o = lambda *a: openssl(*a, cwd=d)
        o("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
        o("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=fuzz CA", "-out", "ca.crt",
          "-days", "3650", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
        o("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec.key")
        o("pkcs8", "-topk8", "-nocrypt", "-in", "ec.key", "-out", "ec8.key")
        o("genrsa", "-traditional", "-out", "rsa1.key", "2048")
        o("pkcs8", "-topk8", "-nocrypt", "-in", "rsa1.key", "-out", "rsa8.key")
        open(os.path.join(d, "ext"), "w").write(
            "subjectAltName=DNS:app.example\nextendedKeyUsage=serverAuth,clientAuth\n"
            "basicConstraints=CA:FALSE\n")
        for key in ["ec.key", "rsa1.key"]:
            o("req", "-new", "-key", key, "-subj", "/CN=app", "-out", key + ".csr")
            o("x509", "-req", "-in", key + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
              "-days", "3650", "-extfile", "ext", "-out", key + ".crt")
        r = lambda n: open(os.path.join(d, n), "rb").read()
        ca, ec, ec8, rsa1, rsa8 = r("ca.crt"), r("ec.key"), r("ec8.key"), r("rsa1.key"), r("rsa8.key")
        ec_crt, rsa_crt = r("ec.key.crt"), r("rsa1.key.crt")
        z = b"\0"
        write("pem", ec_crt + z + ec + z + ca)           # all good: SEC1 EC key
        write("pem", ec_crt + z + ec8 + z + ca)          # PKCS#8 EC key
        write("pem", rsa_crt + z + rsa1 + z + ca)        # PKCS#1 RSA key
        write("pem", rsa_crt + z + rsa8 + z + ca)        # PKCS#8 RSA key
        write("pem", ec_crt + ec + z + rsa1 + z + ca)    # combined, wrong pair
        write("pem", ec_crt + ca + z + z + ec_crt)       # chain in file, wrong CA
        write("pem", ec_crt[: len(ec_crt) // 2] + z + ec + z + ca)  # torn
        write("pem", b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n" + ec)
        write("pem", b"<no value>\n")

def safe_seeds():
    head = "HTTP/1.1 {}\r\n{}Content-Length: {}\r\n\r\n{}"
    bodies = [('{"data":"%s","created":"\\"2026-12-03T08:00:00Z\\"","updated":"\\"2026-12-03T08:00:00Z\\""}'
               % ('{\\"username\\":\\"admin\\",\\"db\\":{\\"password\\":\\"%s\\"}}' % CANARY)),
              '{"data":"%s"}' % CANARY, '{"data":""}', '{"data":null}', '{"data":"username: u\\n"}',
              '{"dat', 'NOK!', '']
    for b in bodies:
        write("safe_response", head.format("200 OK", "", len(b), b))
    for status, extra, body in [("404 Not Found", "", ""), ("400 Bad Request", "", ""),
                                ("503 Service Unavailable", "", "NOK!"),
                                ("503 Service Unavailable", "Retry-After: 7\r\n", "NOK!"),
                                ("503 Service Unavailable", "Retry-After: 18446744073709551615\r\n", ""),
                                ("429 Too Many Requests", "Retry-After: Wed, 21 Oct 2026 07:28:00 GMT\r\n", ""),
                                ("500 Internal Server Error", "", "")]:
        write("safe_response", head.format(status, extra, len(body), body))
    chunked = '{"data":"%s"}' % CANARY
    write("safe_response", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
          % (len(chunked), chunked))
    write("safe_response", "HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + "x" * 100)

def spiffe_seeds():
    safe = "^spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/[^/]+$"
    ids = ["spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/vsecm-safe-0",
           "spiffe://vsecm.com/workload/evil/ns/default/sa/evil/n/evil-0", ""]
    for prefix, domain in [(safe, "vsecm.com"), (safe, "other.org"),
                           ("spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/", "vsecm.com"),
                           ("^spiffe://vsecm.com/(a{1000}){1000}", "vsecm.com"), ("  ", "vsecm.com"),
                           ("^spiffe://vsecm.com/[", "vsecm.com")]:
        write("spiffe_id", "\0".join([prefix, domain] + ids))

def cli_seeds():
    for argv in [
        ["watch", "--mount-path", "/secrets", "--file", "db.json", "--file", "tls.crt", "--required-keys", "user,/db/password",
         "--timeout", "30s", "--format", "auto"],
        ["watch", "--mount-path", "/s", "--format", "pem", "--key-pair", "tls.crt:tls.key", "--ca-file", "ca.crt",
         "--min-validity", "1h", "--keep-running", "--listen", "127.0.0.1:8080", "--", "/app", "-x"],
        ["check", "--mount-path", "/s", "--file", "a.yaml", "--max-file-size", "1MiB", "--settle-time", "200ms"],
        ["safe", "--required-keys", "username", "--output-dir", "/out", "--file-mode", "0440", "--timeout", "1m",
         "VSECM_INIT_CONTAINER_POLL_INTERVAL=5000", "SPIFFE_ENDPOINT_SOCKET=unix:///spire/agent.sock",
         "VSECM_SAFE_ENDPOINT_URL=https://vsecm-safe.vsecm-system.svc.cluster.local:8443/",
         "VSECM_SPIFFEID_PREFIX_SAFE=^spiffe://vsecm.com/workload/vsecm-safe/ns/vsecm-system/sa/vsecm-safe/n/[^/]+$"],
        ["safe", "--keep-running", "--on-change-url", "http://127.0.0.1:9/reload?token=x",
         "SECRET_GATE_OUTPUT=/out/secret", "VSECM_SIDECAR_POLL_INTERVAL=", "SECRET_GATE_MAX_BODY_SIZE=99999999999G"],
        ["--help"], ["--version"], ["watch", "--termination-log=/dev/termination-log", "--bogus"],
        ["SECRET_GATE_TIMEOUT=10", "SECRET_GATE_MOUNT_PATH=/s", "watch"],
    ]:
        write("cli", "\0".join(argv))

if __name__ == "__main__":
    import shutil
    shutil.rmtree(CORPUS, ignore_errors=True)  # regenerated whole (new PEM keys each time)
    format_seeds()
    pem_seeds()
    safe_seeds()
    spiffe_seeds()
    cli_seeds()
    for t in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, t))
        size = sum(os.path.getsize(os.path.join(CORPUS, t, f)) for f in files)
        print(f"{t}: {len(files)} seeds, {size} bytes")

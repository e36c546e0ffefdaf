# A test app for the powerbox end-to-end tests, run inside a grain by Debian's python3. It
# drives the bridge's local API ($GRANARY_API, $HTTP_PROXY) the way a real app would, and is
# also a provider: it serves /api/* to other grains (manifest [[powerbox.provides]]).
#
# POST /claim  {"claimToken", "label"?, "permissions"?: [...]} -> the bridge's /claim answer
# POST /call   {"token", "url", "method"?, "body_bytes"?}      -> {"status", "body", "headers"}
# POST /save   {"token", "label"}                               -> the bridge's /save answer
# POST /drop   {"token"}                                        -> the bridge's answer
# POST /burst  {"token", "n"}: n saves of copies of token, each returned token appended (and
#              fsynced) to /var/tokens.txt before the next save starts   -> {"saved": k}
# POST /mail   {"token", "to": [...], "message"}                -> the bridge's /mail/send answer
# POST /offer  {"title", "description"?}: the bridge's /offer for this session (an API key offer)
# POST /fulfill {"api", "pathPrefix"?, "title"?}: the bridge's /fulfill for this session (a
#              chooser page's answer to the powerbox request it was opened for)
# POST /awake  {"reason"} / POST /asleep {"id"}: the bridge's /stay-awake (wake locks)
# GET  /direct?port=N: a direct TCP connect to 127.0.0.1:N and to 10.0.2.2:N from the grain
# GET  /maildir: names and contents of the files in /var/mail/new
# GET  /api/...: the provider's API: {"api": path, "user": X-Granary-User-Id, "permissions"}
import hashlib
import http.server
import json
import os
import socket
import urllib.error
import urllib.request

API = os.environ.get("GRANARY_API", "")


def local(method, path, body=None, headers=None):
    """A request to the bridge's local API; returns (status, parsed JSON)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(API + path, data=data, method=method, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def through_proxy(token, url, method, body):
    """A request through $HTTP_PROXY with the capability's token; returns the remote answer."""
    req = urllib.request.Request(url, data=body, method=method, headers={"Authorization": "Bearer " + token})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": os.environ["HTTP_PROXY"]}))
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def direct(port):
    out = {}
    for host in ("127.0.0.1", "10.0.2.2"):
        try:
            s = socket.create_connection((host, port), timeout=3)
            s.close()
            out[host] = "connected"
        except OSError as e:
            out[host] = "%s: %s" % (type(e).__name__, e)
    return out


class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, value):
        out = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def do_GET(self):
        if self.path.startswith("/api/"):
            self.reply(200, {"api": self.path, "user": self.headers.get("X-Granary-User-Id", ""),
                             "permissions": self.headers.get("X-Granary-Permissions", ""),
                             "session_type": self.headers.get("X-Granary-Session-Type", ""),
                             "session": self.headers.get("X-Granary-Session-Id", "")})
        elif self.path.startswith("/direct?port="):
            self.reply(200, direct(int(self.path.split("=", 1)[1])))
        elif self.path == "/maildir":
            files = {}
            d = "/var/mail/new"
            for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
                with open(os.path.join(d, name), "rb") as f:
                    files[name] = f.read().decode("utf-8", "replace")
            self.reply(200, files)
        else:
            self.reply(200, {"app": "powerbox test app", "session": self.headers.get("X-Granary-Session-Id", ""),
                             "path": self.path})

    def do_POST(self):
        if self.path == "/api/digest":
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            return self.reply(200, {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()})
        b = self.body()
        if self.path == "/claim":
            status, v = local("POST", "/claim", {"sessionId": self.headers.get("X-Granary-Session-Id", ""),
                                                 "claimToken": b.get("claimToken", ""), "label": b.get("label", "test"),
                                                 "requiredPermissions": b.get("permissions", [])})
            self.reply(status, v)
        elif self.path == "/call":
            size = int(b.get("body_bytes", 0))
            payload = bytes(i % 251 for i in range(size)) if size else None
            status, body, headers = through_proxy(b["token"], b["url"], b.get("method", "GET"), payload)
            self.reply(200, {"status": status, "body": body.decode("utf-8", "replace"), "headers": headers})
        elif self.path == "/save":
            self.reply(*local("POST", "/save", {"token": b["token"], "label": b.get("label", "copy")}))
        elif self.path == "/drop":
            self.reply(*local("DELETE", "/tokens/" + b["token"]))
        elif self.path == "/burst":
            saved = 0
            with open("/var/tokens.txt", "a") as f:
                for i in range(int(b["n"])):
                    status, v = local("POST", "/save", {"token": b["token"], "label": "burst %d" % i})
                    if status != 200:
                        break
                    f.write(v["token"] + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                    saved += 1
            self.reply(200, {"saved": saved})
        elif self.path == "/awake":
            self.reply(*local("POST", "/stay-awake", {"reason": b.get("reason", "")}))
        elif self.path == "/asleep":
            self.reply(*local("DELETE", "/stay-awake/%d" % int(b["id"])))
        elif self.path == "/fulfill":
            b["sessionId"] = self.headers.get("X-Granary-Session-Id", "")
            self.reply(*local("POST", "/fulfill", b))
        elif self.path == "/offer":
            b["sessionId"] = self.headers.get("X-Granary-Session-Id", "")
            self.reply(*local("POST", "/offer", b))
        elif self.path == "/mail":
            to = "&".join("to=" + urllib.request.quote(t) for t in b["to"])
            self.reply(*local("POST", "/mail/send?" + to, b["message"].encode(), {"Authorization": "Bearer " + b["token"]}))
        else:
            self.reply(404, {"error": "no such route"})

    def log_message(self, fmt, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


Server(("127.0.0.1", 8000), App).serve_forever()

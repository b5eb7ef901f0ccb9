"""The HTTP side of the loopback Hub (``hub_server.HubServer``): the routes huggingface_hub 2.4
calls and a handler that answers each from the server's state, records it in ``hub.log`` and
applies its faults (cut, damage, slow). Kept apart from the state so each reads on its own."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import traceback
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import yaml

from hub_server import (
    GITATTRIBUTES,
    INVALID_TOKEN,
    Blob,
    Commit,
    HubError,
    HubServer,
    Repo,
    Request,
    front_matter,
    is_lfs,
    now,
)

_REPO = r"(?P<repo>[^/]+/[^/]+)"
_API = rf"^/api/(?P<type>models|datasets)/{_REPO}"
_ROUTES = [
    (("GET",), r"^/api/(?P<type>models|datasets)$", "list"),
    (("GET",), r"^/api/whoami-v2$", "whoami"),
    (("POST",), r"^/api/repos/create$", "create"),
    (("POST",), r"^/api/validate-yaml$", "validate_yaml"),
    (("GET",), _API + r"(?:/revision/(?P<rev>[^/]+))?$", "info"),
    (("GET",), _API + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$", "tree"),
    (("POST",), _API + r"/paths-info/(?P<rev>[^/]+)$", "paths_info"),
    (("GET",), _API + r"/commits/(?P<rev>[^/]+)$", "commit_list"),
    (("POST",), _API + r"/preupload/(?P<rev>[^/]+)$", "preupload"),
    (("POST",), _API + r"/commit/(?P<rev>[^/]+)$", "commit"),
    (
        ("GET", "HEAD"),
        rf"^/(?P<type>datasets/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$",
        "resolve",
    ),
    (("GET", "HEAD"), rf"^/cdn/{_REPO}/(?P<rev>[0-9a-f]{{40}})/(?P<path>.+)$", "cdn"),
    (("POST",), rf"^/(?P<type>datasets/)?{_REPO}\.git/info/lfs/objects/batch$", "lfs_batch"),
    (("PUT",), rf"^/lfs/upload/{_REPO}/(?P<oid>[0-9a-f]{{64}})$", "lfs_upload"),
    (("POST",), rf"^/lfs/verify/{_REPO}/(?P<oid>[0-9a-f]{{64}})$", "lfs_verify"),
]
_COMPILED = [(methods, re.compile(pattern), name) for methods, pattern, name in _ROUTES]
_LIST_FIELDS = {
    "_id",
    "id",
    "likes",
    "trendingScore",
    "private",
    "downloads",
    "tags",
    "pipeline_tag",
    "library_name",
    "createdAt",
    "modelId",
}
_FULL_FIELDS = {"author", "sha", "lastModified", "gated", "disabled", "siblings"}
_SORTS = {"downloads", "likes", "trendingScore", "lastModified", "createdAt", "id"}


def _true(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


class Handler(BaseHTTPRequestHandler):
    """Routes one request to the HubServer; records it in ``hub.log`` whatever happens."""

    protocol_version = "HTTP/1.1"
    timeout = 60

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code
        super().send_response(code, message)

    def _dispatch(self) -> None:
        hub: HubServer = self.server.hub  # type: ignore[attr-defined]
        self._status, self._sent, self._started = 0, 0, time.time()
        self._logged: int | None = None
        split = self._split = urlsplit(self.path)
        self._query = parse_qs(split.query, keep_blank_values=True)
        try:
            body = self._read_body()
            for methods, pattern, name in _COMPILED:
                match = pattern.match(split.path)
                if match and self.command in methods:
                    groups = match.groupdict()
                    if "type" in groups:
                        groups["type"] = (
                            "dataset" if (groups["type"] or "").startswith("dataset") else "model"
                        )
                    getattr(self, "_" + name)(hub, groups, body)
                    break
            else:
                raise HubError(
                    404,
                    f"Sorry, we can't find the page ({self.command} {split.path})",
                )
        except HubError as e:
            headers = {"X-Error-Message": e.message.encode("ascii", "replace").decode()}
            headers.update({"X-Error-Code": e.code} if e.code else {})
            headers.update({"X-Repo-Commit": e.commit} if e.commit else {})
            try:
                self._json({"error": e.message}, e.status, headers)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (killed, cancelled)
        except Exception as e:  # a bug of this server: answer 500 and keep the traceback
            hub.errors.append(traceback.format_exc())
            self.close_connection = True
            if not self._status:
                self._json({"error": f"loopback Hub bug: {e!r}"}, 500)
        finally:
            self._log_now()

    def _log_now(self) -> None:
        """Log (or update the log of) this request; done before a response's last byte leaves, so
        a client that has its answer always finds the request in ``hub.log``."""
        hub: HubServer = self.server.hub  # type: ignore[attr-defined]
        record = Request(
            self.command,
            unquote(self._split.path),
            self._query,
            dict(self.headers),
            self.headers.get("Range"),
            self._status,
            self._sent,
            self._started,
            time.time(),
        )
        with hub._lock:
            if self._logged is None:
                self._logged = len(hub.log)
                hub.log.append(record)
            else:
                hub.log[self._logged] = record

    def _write_last(self, body: bytes) -> None:
        """End the headers and write ``body``, logging first what will have been sent."""
        if self.command == "HEAD" or not body:
            self._log_now()
            self.end_headers()
            return
        self.end_headers()
        self.wfile.write(body[:-1])
        self._sent += len(body)
        self._log_now()
        try:
            self.wfile.write(body[-1:])
        except OSError:
            self._sent -= 1
            raise

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        hub: HubServer = self.server.hub  # type: ignore[attr-defined]
        rate = hub.upload_rate if self.command == "PUT" else None
        if not rate:
            return self.rfile.read(length) if length else b""
        parts, piece = [], max(1, min(1 << 16, rate // 20))
        while length > 0 and (part := self.rfile.read(min(piece, length))):
            parts.append(part)
            length -= len(part)
            time.sleep(len(part) / rate)
        return b"".join(parts)

    def _one(self, name: str) -> str | None:
        return self._query.get(name, [None])[0]

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self._write_last(body)

    def _json(
        self,
        obj: object,
        status: int = 200,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self._send(status, json.dumps(obj).encode(), headers, content_type)

    def _url_of(self, hub: HubServer, r: Repo) -> str:
        return f"{hub.url}/{'datasets/' if r.repo_type == 'dataset' else ''}{r.repo_id}"

    # --- reading --------------------------------------------------------------------------

    def _list(self, hub: HubServer, g: dict, body: bytes) -> None:
        user = hub._user(self._token())
        with hub._lock:
            infos = [
                hub.info(r, r.commits[r.history["main"][-1]])
                for r in hub.repos.values()
                if r.repo_type == g["type"]
                and (not r.private or hub._owns(user, r.repo_id.split("/")[0]))
            ]
        search = (self._one("search") or "").lower()
        infos = [i for i in infos if search in i["id"].lower()]
        if author := self._one("author"):
            infos = [i for i in infos if i["author"].lower() == author.lower()]
        for tag in self._query.get("filter", []):
            infos = [i for i in infos if tag in i["tags"]]
        if pipeline_tag := self._one("pipeline_tag"):
            infos = [i for i in infos if i.get("pipeline_tag") == pipeline_tag]
        if (gated := self._one("gated")) is not None:
            infos = [i for i in infos if bool(i["gated"]) == _true(gated)]
        if sort := self._one("sort"):
            if sort not in _SORTS:
                raise HubError(400, f"Invalid sort parameter: {sort}")
            infos.sort(key=lambda i: i[sort] or 0, reverse=self._one("direction") != "1")
        page = min(int(self._one("limit") or hub.page_size), hub.page_size, 1000)
        cursor = int(self._one("cursor") or 0)
        headers = {}
        if cursor + page < len(infos):
            query = {k: v for k, v in self._query.items() if k != "cursor"} | {
                "cursor": [str(cursor + page)]
            }
            headers["Link"] = (
                f'<{hub.url}/api/{g["type"]}s?{urlencode(query, doseq=True)}>; rel="next"'
            )
        expand = self._query.get("expand", []) + self._query.get("expand[]", [])
        fields = {"_id", "id", *expand} if expand else set(_LIST_FIELDS)
        if not expand:
            fields |= _FULL_FIELDS if _true(self._one("full")) else set()
            fields |= {"config"} if _true(self._one("config")) else set()
            fields |= {"cardData"} if _true(self._one("cardData")) else set()
        items = [
            {k: v for k, v in i.items() if k in fields and v is not None}
            for i in infos[cursor : cursor + page]
        ]
        self._json(items, headers=headers)

    def _info(self, hub: HubServer, g: dict, body: bytes) -> None:
        with hub._lock:
            r = hub._repo(g["repo"], g["type"], self._token())
            info = hub.info(
                r, hub._resolve(r, unquote(g["rev"] or "main")), _true(self._one("blobs"))
            )
        if expand := self._query.get("expand", []) + self._query.get("expand[]", []):
            info = {k: v for k, v in info.items() if k in {"_id", "id", *expand}}
        self._json({k: v for k, v in info.items() if v is not None})

    @staticmethod
    def _entry(path: str, b: Blob | None) -> dict[str, Any]:
        if b is None:
            return {
                "type": "directory",
                "oid": hashlib.sha1(path.encode()).hexdigest(),
                "size": 0,
                "path": path,
            }
        e: dict[str, Any] = {"type": "file", "oid": b.blob_id, "size": len(b.data), "path": path}
        if b.lfs:
            e["lfs"] = {"oid": b.sha256, "size": len(b.data), "pointerSize": len(b.pointer)}
        return e

    def _tree(self, hub: HubServer, g: dict, body: bytes) -> None:
        with hub._lock:
            r = hub._repo(g["repo"], g["type"], self._token())
            c = hub._resolve(r, unquote(g["rev"]))
        prefix = unquote(g["path"] or "").strip("/")
        entries: dict[str, dict] = {}
        for path, b in sorted(c.files.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            parts = path.split("/")
            start = len(prefix.split("/")) if prefix else 0
            for depth in range(start + 1, len(parts)):
                entries.setdefault(
                    "/".join(parts[:depth]), self._entry("/".join(parts[:depth]), None)
                )
                if not _true(self._one("recursive")):
                    break
            if _true(self._one("recursive")) or len(parts) == start + 1:
                entries[path] = self._entry(path, b)
        if prefix and not entries:
            raise HubError(404, f"{prefix} does not exist on {g['rev']}", "EntryNotFound", c.sha)
        self._json(list(entries.values()))

    def _paths_info(self, hub: HubServer, g: dict, body: bytes) -> None:
        with hub._lock:
            r = hub._repo(g["repo"], g["type"], self._token())
            c = hub._resolve(r, unquote(g["rev"]))
        out = []
        for path in parse_qs(body.decode()).get("paths", []):
            path = path.strip("/")
            if path in c.files:
                out.append(self._entry(path, c.files[path]))
            elif any(p.startswith(path + "/") for p in c.files):
                out.append(self._entry(path, None))
        self._json(out)

    def _commit_list(self, hub: HubServer, g: dict, body: bytes) -> None:
        with hub._lock:
            r = hub._repo(g["repo"], g["type"], self._token())
            head = hub._resolve(r, unquote(g["rev"])).sha
            branch = next((h for h in r.history.values() if head in h), [head])
            shas = branch[: branch.index(head) + 1]
            commits = [r.commits[s] for s in reversed(shas)]
        self._json(
            [
                {
                    "id": c.sha,
                    "authors": [{"user": "lwq-test"}],
                    "date": c.date,
                    "title": c.title,
                    "message": "",
                }
                for c in commits
            ]
        )

    def _whoami(self, hub: HubServer, g: dict, body: bytes) -> None:
        user = hub._user(self._token())
        if user is None:
            raise HubError(401, INVALID_TOKEN)
        self._json(user)

    def _resolve(self, hub: HubServer, g: dict, body: bytes) -> None:
        with hub._lock:
            r = hub._repo(g["repo"], g["type"], self._token(), files=True)
            c = hub._resolve(r, unquote(g["rev"]))
        path = unquote(g["path"])
        b = c.files.get(path)
        if b is None:
            raise HubError(404, "Entry not found", "EntryNotFound", c.sha)
        if b.lfs and hub.lfs_redirect:
            headers = self._file_headers(c, b) | {
                "Location": f"{hub.url}/cdn/{r.repo_id}/{c.sha}/{g['path']}"
            }
            return self._send(302, b"", headers)
        self._serve(hub, r.repo_id, path, c, b)

    def _cdn(self, hub: HubServer, g: dict, body: bytes) -> None:
        path = unquote(g["path"])
        with hub._lock:
            r = hub.repos.get(g["repo"])
            c = r.commits.get(g["rev"]) if r else None
            b = c.files.get(path) if c else None
        if c is None or b is None:
            raise HubError(404, "NoSuchKey")
        self._serve(hub, g["repo"], path, c, b)

    @staticmethod
    def _file_headers(c: Commit, b: Blob) -> dict[str, str]:
        headers = {"X-Repo-Commit": c.sha, "ETag": f'"{b.etag}"', "Accept-Ranges": "bytes"}
        if b.lfs:
            headers.update({"X-Linked-Etag": f'"{b.sha256}"', "X-Linked-Size": str(len(b.data))})
        return headers

    def _serve(self, hub: HubServer, repo: str, path: str, c: Commit, b: Blob) -> None:
        """The file's bytes, honouring Range and the faults set on it."""
        key, data, headers = (repo, path), b.data, self._file_headers(c, b)
        if key in hub._damaged and data:
            i = len(data) // 2
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
        start, end, status = 0, len(data) - 1, 200
        if (wanted := self.headers.get("Range")) is not None:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", wanted.strip())
            if match is None or not (match[1] or match[2]):
                raise HubError(416, f"Invalid range: {wanted}")
            if match[1]:
                start, end = int(match[1]), min(int(match[2] or end), end)
            else:
                start = max(len(data) - int(match[2]), 0)
            if start >= len(data) or start > end:
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            status, headers["Content-Range"] = 206, f"bytes {start}-{end}/{len(data)}"
        body = data[start : end + 1]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        with hub._lock:
            cuts = hub._cuts.get(key) if self.command == "GET" else None
            limit = cuts.pop(0) if cuts else None
        rate = hub._slow.get(key)
        if limit is None and not rate:
            return self._write_last(body)
        self.end_headers()
        sent, last = (body[:limit], b"") if limit is not None else (body[:-1], body[-1:])
        piece = max(1, min(1 << 16, rate // 20)) if rate else 1 << 16
        for i in range(0, len(sent), piece):
            self.wfile.write(sent[i : i + piece])
            self._sent += len(sent[i : i + piece])
            if rate:
                time.sleep(len(sent[i : i + piece]) / rate)
        if limit is not None:
            self.close_connection = True  # short of Content-Length: the client sees a cut download
        elif last:
            self._sent += 1
            self._log_now()
            self.wfile.write(last)

    # --- writing --------------------------------------------------------------------------

    def _validate_yaml(self, hub: HubServer, g: dict, body: bytes) -> None:
        try:
            front_matter(json.loads(body).get("content", "").encode())
        except yaml.YAMLError as e:
            return self._json({"errors": [{"message": str(e)}], "warnings": []}, 400)
        self._json({"errors": [], "warnings": []})

    def _create(self, hub: HubServer, g: dict, body: bytes) -> None:
        p = json.loads(body)
        token = self._token()
        user = hub._user(token)
        repo_type = p.get("type") or "model"
        namespace = p.get("organization") or (user["name"] if user else "")
        hub._writer(namespace, token, repo_type)
        repo_id = f"{namespace}/{p['name']}"
        prefix = "datasets/" if repo_type == "dataset" else ""
        with hub._lock:
            if repo_id in hub.repos:
                return self._json(
                    {
                        "error": f"You already created this {repo_type} repo",
                        "url": f"{hub.url}/{prefix}{repo_id}",
                    },
                    409,
                )
            private = bool(p.get("private")) or p.get("visibility") == "private"
            r = hub.repos[repo_id] = Repo(repo_id, repo_type, private, False, {}, now())
            hub._commit(r, "main", {".gitattributes": Blob(GITATTRIBUTES, False)}, "initial commit")
        self._json(
            {
                "url": f"{hub.url}/{prefix}{repo_id}",
                "name": repo_id,
                "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            }
        )

    def _preupload(self, hub: HubServer, g: dict, body: bytes) -> None:
        with hub._lock:
            r = hub._write_repo(g["repo"], g["type"], self._token())
            c = hub._resolve(r, unquote(g["rev"]))
        files = []
        for f in json.loads(body)["files"]:
            lfs = is_lfs(f["path"], f["size"], base64.b64decode(f["sample"]))
            old = c.files.get(f["path"])
            oid = None if old is None else old.sha256 if old.lfs else old.blob_id
            files.append(
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        self._json({"files": files, "commitOid": c.sha})

    def _lfs_batch(self, hub: HubServer, g: dict, body: bytes) -> None:
        with hub._lock:
            r = hub._write_repo(g["repo"], g["type"], self._token())
            have = hub.lfs_objects.setdefault(r.repo_id, {})
        p = json.loads(body)
        if p.get("operation") != "upload":
            raise HubError(400, "This loopback Hub only takes LFS uploads")
        objects = []
        for o in p["objects"]:
            oid, size = o["oid"], o["size"]
            if oid in have:
                objects.append({"oid": oid, "size": size})
                continue
            base = f"{hub.url}/lfs/%s/{r.repo_id}/{oid}"
            actions = {
                "upload": {"href": base % "upload" + f"?size={size}", "header": {}},
                "verify": {"href": base % "verify", "header": {}},
            }
            objects.append({"oid": oid, "size": size, "authenticated": True, "actions": actions})
        self._json(
            {"transfer": "basic", "objects": objects}, content_type="application/vnd.git-lfs+json"
        )

    def _lfs_upload(self, hub: HubServer, g: dict, body: bytes) -> None:
        got = hashlib.sha256(body).hexdigest()
        if got != g["oid"]:
            raise HubError(
                400,
                f"sha256 mismatch: the object is {g['oid']}, the body {got} ({len(body)} bytes)",
            )
        if (size := self._one("size")) is not None and int(size) != len(body):
            raise HubError(400, f"size mismatch: expected {size} bytes, got {len(body)}")
        with hub._lock:
            hub.lfs_objects.setdefault(g["repo"], {})[g["oid"]] = body
        self._send(200, b"", {"ETag": f'"{g["oid"]}"'})

    def _lfs_verify(self, hub: HubServer, g: dict, body: bytes) -> None:
        p = json.loads(body)
        data = hub.lfs_objects.get(g["repo"], {}).get(p.get("oid", ""))
        if data is None or len(data) != p.get("size"):
            raise HubError(404, f"Object {p.get('oid')} not found")
        self._json({"success": True})

    def _commit(self, hub: HubServer, g: dict, body: bytes) -> None:
        if _true(self._one("create_pr")):
            raise HubError(400, "This loopback Hub takes no pull requests")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        rev = unquote(g["rev"])
        with hub._lock:
            r = hub._write_repo(g["repo"], g["type"], self._token())
            head = hub._resolve(r, rev).sha
            if rev not in r.history:
                raise HubError(400, f"Can only commit to a branch, not {rev}")
            files = dict(r.commits[head].files)
            known = {
                b.sha256: b.data for c in r.commits.values() for b in c.files.values() if b.lfs
            }
            known.update(hub.lfs_objects.get(r.repo_id, {}))
            title = "Upload files"
            for line in lines:
                key, v = line["key"], line["value"]
                if key == "header":
                    title = v.get("summary") or title
                    if v.get("parentCommit") not in (None, head):
                        raise HubError(
                            412, "A commit has happened since. Please refresh and try again."
                        )
                elif key == "file":
                    data = v["content"].encode()
                    files[v["path"]] = Blob(
                        base64.b64decode(data) if v.get("encoding") == "base64" else data, False
                    )
                elif key == "lfsFile":
                    if v["oid"] not in known:
                        raise HubError(
                            422, f"LFS object {v['oid']} of {v['path']} was never uploaded"
                        )
                    files[v["path"]] = Blob(known[v["oid"]], True)
                elif key == "deletedFile":
                    if files.pop(v["path"], None) is None:
                        raise HubError(
                            404,
                            f"A file with this name doesn't exist: {v['path']}",
                            "EntryNotFound",
                        )
                elif key == "deletedFolder":
                    for path in [p for p in files if p.startswith(v["path"].rstrip("/") + "/")]:
                        del files[path]
                else:
                    raise HubError(400, f"Unknown commit operation {key}")
            sha = hub._commit(r, rev, files, title)
        self._json(
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{self._url_of(hub, r)}/commit/{sha}",
                "pullRequestUrl": None,
                "hookOutput": "",
            }
        )

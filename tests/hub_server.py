"""A loopback Hugging Face Hub: the HTTP API that `huggingface_hub` 2.4 talks to, on 127.0.0.1.

Tests run the real client against it (``HfApi(endpoint=server.url, token=...)``), so what is tested
is what production sends; faults (a cut connection, damaged bytes, a slow file) are server-side.

Served, as huggingface.co answers huggingface_hub 2.4 (models, and datasets under ``datasets/``):

- ``GET /api/models`` (``search``, ``author``, ``filter`` (AND over tags; ``gguf``/``safetensors``
  are derived from the files), ``pipeline_tag``, ``gated``, ``sort`` (downloads, likes,
  trendingScore, lastModified, createdAt, id), ``direction``, ``limit`` (page size), ``expand`` /
  ``expand[]``, ``full``, ``config``, ``cardData``; ``Link: rel="next"`` pagination past
  ``page_size``) and ``GET /api/datasets``;
- ``GET /api/{models|datasets}/{repo}[/revision/{rev}]`` (``blobs=true`` gives sizes, ``blobId``,
  ``lfs``; ``expand``), ``/tree/{rev}[/{path}]``, ``POST /paths-info/{rev}``, ``/commits/{rev}``;
- ``HEAD``/``GET /[datasets/]{repo}/resolve/{rev}/{path}``: quoted ``ETag`` (git blob sha1, or the
  sha256 for LFS), ``X-Repo-Commit``, ``X-Linked-Etag``/``X-Linked-Size`` for LFS,
  ``Accept-Ranges``, ``Range: bytes=N-[M]`` -> 206 + ``Content-Range`` (416 past the end);
- ``GET /api/whoami-v2``; ``POST /api/repos/create`` (409 with ``url`` when it exists; a new repo
  gets an "initial commit" holding ``.gitattributes``, as on the Hub); ``POST /api/validate-yaml``;
  ``POST /api/{type}s/{repo}/preupload/{rev}``; LFS ``POST /{repo}.git/info/lfs/objects/batch``
  (basic transfer: upload + verify hrefs on this server), ``PUT /lfs/upload/{repo}/{oid}`` (sha256
  and size checked; chunked bodies accepted), ``POST /lfs/verify/{repo}/{oid}``;
  ``POST .../commit/{rev}``
  (NDJSON; ``file``/``lfsFile``/``deletedFile``/``deletedFolder``; ``parentCommit`` -> 412 when
  stale). Xet is never offered: clients must run with ``HF_HUB_DISABLE_XET=1`` (see ``hub_env``).

Errors carry ``X-Error-Code``/``X-Error-Message`` like the Hub: a missing or private repo ->
401 (no token) / 404 ``RepoNotFound``; a gated repo's files -> 401 (no token) / 403 (not granted)
``GatedRepo`` (its model info stays public, as on the Hub); ``EntryNotFound`` and
``RevisionNotFound`` 404; an unknown token -> 401 "Invalid credentials in Authorization header";
writes need a token whose user (or one of its ``orgs``) owns the namespace, with role ``write`` or
a fine-grained ``repo.write`` scope, else 401/403.

A file is LFS when its name has a weights/archive suffix (``LFS_SUFFIXES``: .gguf,
.safetensors, .bin, .model, .zip, ...), it is 10 MiB or more, or its first 512 bytes hold a NUL;
``add_model(lfs={...})`` forces more. The log records each request before its response's last
byte leaves (so a client that has its answer finds it in ``log``); a cut or a client that went
away is recorded with the bytes actually written. ``cut_after``/``damage``/``slow`` act on GETs of
the file's bytes (resolve, or CDN with ``lfs_redirect``); ``cut_after`` counts bytes of that
response's body (after any Range start), sends ``Content-Length`` in full and closes the
connection, so httpx raises ``RemoteProtocolError``.

Beyond the shared interface: ``add_model(commit=, lfs=)`` (fix the commit sha, e.g. a dataset's
pinned revision; force paths to LFS); ``add_model`` again on a repo commits a new whole tree;
``add_token(orgs=)``; ``gated=True`` means "manual" and, until ``gate`` is called, admits every
valid token; ``lfs_redirect = True``: LFS resolves answer 302 to ``/cdn/...`` on this server, as
the Hub sends large files to its CDN; ``upload_rate``: bytes/s at which LFS PUT bodies are read
(to cancel an upload midway); ``page_size``; ``downloads(repo, path)``: the GETs of that file's
bytes, oldest first; ``lfs_objects`` (repo -> sha256 -> bytes); ``errors``: tracebacks of this
server's own bugs (answered 500); ``clear_faults()``; ``info(repo, commit)``. ``Request.query`` is
``dict[str, list[str]]``, ``Request.path`` the unquoted URL path, times are ``time.time()``.

Fixture ``hub_server`` (tests/conftest.py): a fresh server per test via ``hub_env``, which sets
HF_ENDPOINT, HF_HOME and LWQ_CACHE_DIR (in tmp_path), HF_HUB_DISABLE_XET=1, HF_HUB_OFFLINE=0,
NO_PROXY, unsets HF_TOKEN/HF_HUB_CACHE/proxies, and patches the import-time
``huggingface_hub.constants`` (HF_HUB_DISABLE_XET, HF_HUB_OFFLINE, HF_HOME, HF_HUB_CACHE,
HF_TOKEN_PATH, HF_STORED_TOKENS_PATH) for this process; ENDPOINT is left alone on purpose, so code
that forgets ``endpoint=`` fails instead of passing. No tokens exist until ``add_token``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import yaml

LFS_SUFFIXES = (
    ".gguf",
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".onnx",
    ".msgpack",
    ".h5",
    ".model",
    ".zip",
    ".gz",
    ".tar",
    ".zst",
    ".parquet",
    ".arrow",
    ".npy",
    ".npz",
    ".pkl",
)
LFS_MIN_SIZE = 10 << 20
GITATTRIBUTES = b"".join(
    b"*%s filter=lfs diff=lfs merge=lfs -text\n" % s.encode() for s in LFS_SUFFIXES
)
INVALID_TOKEN = "Invalid credentials in Authorization header"


@dataclass(frozen=True)
class Request:
    """One request as the server saw it; ``body_bytes_sent`` counts response body bytes."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    range: str | None
    status: int
    body_bytes_sent: int
    started: float
    ended: float


@dataclass(frozen=True)
class Blob:
    """A file's bytes; the hashes are computed once (files of a test may be large)."""

    data: bytes
    lfs: bool

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def pointer(self) -> bytes:
        return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (
            self.sha256.encode(),
            len(self.data),
        )

    @cached_property
    def blob_id(self) -> str:
        body = self.pointer if self.lfs else self.data
        return hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()

    @cached_property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id


@dataclass
class Commit:
    sha: str
    files: dict[str, Blob]
    title: str
    date: str


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    gated: bool | str
    meta: dict[str, Any]
    created: str
    allowed: set[str] | None = None
    commits: dict[str, Commit] = field(default_factory=dict)
    history: dict[str, list[str]] = field(default_factory=lambda: {"main": []})


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def _is_lfs(path: str, size: int, sample: bytes) -> bool:
    return path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE or b"\0" in sample[:512]


def _safetensors_params(data: bytes) -> dict[str, int]:
    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
    except (struct.error, ValueError):
        return {}
    params: dict[str, int] = {}
    for name, t in header.items():
        if name != "__metadata__" and isinstance(t, dict):
            count = 1
            for d in t.get("shape", []):
                count *= d
            params[t["dtype"]] = params.get(t["dtype"], 0) + count
    return params


def _front_matter(card: bytes) -> dict[str, Any] | None:
    text = card.decode("utf-8", "replace")
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    loaded = yaml.safe_load(text[3:end]) if end > 0 else None
    return loaded if isinstance(loaded, dict) else None


class HubError(Exception):
    def __init__(
        self, status: int, message: str, code: str | None = None, commit: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


class HubServer:
    """The loopback Hub: state (repos, tokens, LFS objects), faults and the request log."""

    def __init__(self, page_size: int = 1000) -> None:
        self.page_size = page_size
        self.lfs_redirect = False
        self.upload_rate: int | None = None  # bytes/s at which LFS PUT bodies are read
        self.tokens: dict[str, dict] = {}
        self.log: list[Request] = []
        self.errors: list[str] = []  # tracebacks of this server's own bugs (answered 500)
        self.lfs_objects: dict[str, dict[str, bytes]] = {}
        self.repos: dict[str, Repo] = {}
        self._cuts: dict[tuple[str, str], list[int]] = {}
        self._damaged: set[tuple[str, str]] = set()
        self._slow: dict[tuple[str, str], int] = {}
        self._lock = threading.RLock()
        self._counter = 0
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._http.daemon_threads = True
        self._http.hub = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def __enter__(self) -> HubServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    # --- state ----------------------------------------------------------------------------

    def add_model(
        self,
        repo: str,
        files: dict[str, bytes],
        *,
        gated: bool | str = False,
        private: bool = False,
        card: str | None = None,
        meta: dict | None = None,
        repo_type: str = "model",
        commit: str | None = None,
        lfs: set[str] | frozenset[str] = frozenset(),
    ) -> str:
        """Create the repo (or commit a new whole tree to it); returns the commit sha."""
        files = dict(files)
        if card is not None:
            files["README.md"] = card.encode()
        blobs = {p: Blob(d, p in lfs or _is_lfs(p, len(d), d)) for p, d in files.items()}
        with self._lock:
            r = self.repos.get(repo)
            if r is None:
                r = self.repos[repo] = Repo(repo, repo_type, private, gated, {}, _now())
            r.private, r.gated = private, gated
            r.meta.update(meta or {})
            return self._commit(
                r, "main", blobs, "Upload model" if r.commits else "initial commit", commit
            )

    def add_token(
        self,
        token: str,
        user: str,
        role: str = "write",
        fine_grained_scopes: list[str] | None = None,
        orgs: tuple[str, ...] = (),
    ) -> dict:
        """Register a token (its whoami payload is returned and kept in ``tokens``).

        ``fine_grained_scopes`` (e.g. ["repo.content.read", "repo.write"]) makes it fine-grained.
        """
        access: dict[str, Any] = {"displayName": f"{user}-token", "role": role, "createdAt": _now()}
        if fine_grained_scopes is not None:
            access["role"] = "fineGrained"
            access["fineGrained"] = {
                "canReadGatedRepos": True,
                "global": [],
                "scoped": [
                    {
                        "entity": {"type": "user", "name": user},
                        "permissions": list(fine_grained_scopes),
                    }
                ],
            }
        payload = {
            "type": "user",
            "id": hashlib.sha1(user.encode()).hexdigest()[:24],
            "name": user,
            "fullname": user.title(),
            "email": f"{user}@example.invalid",
            "emailVerified": True,
            "isPro": False,
            "orgs": [{"type": "org", "name": o, "roleInOrg": "write"} for o in orgs],
            "auth": {"type": "access_token", "accessToken": access},
        }
        self.tokens[token] = payload
        return payload

    def gate(self, repo: str, allowed_tokens: set[str]) -> None:
        with self._lock:
            r = self.repos[repo]
            r.gated = r.gated or "manual"
            r.allowed = set(allowed_tokens)

    def cut_after(self, repo: str, path: str, nbytes: int, times: int = 1) -> None:
        """The next ``times`` GETs of the file send ``nbytes`` of their body, then hang up."""
        with self._lock:
            self._cuts.setdefault((repo, path), []).extend([nbytes] * times)

    def damage(self, repo: str, path: str) -> None:
        """Serve the file with its middle byte flipped; info and headers keep the true sha256."""
        self._damaged.add((repo, path))

    def slow(self, repo: str, path: str, bytes_per_s: int) -> None:
        self._slow[(repo, path)] = bytes_per_s

    def clear_faults(self) -> None:
        """Forget every ``cut_after``, ``damage`` and ``slow``."""
        with self._lock:
            self._cuts.clear()
            self._damaged.clear()
            self._slow.clear()

    def repo_files(self, repo: str, revision: str = "main") -> dict[str, bytes]:
        with self._lock:
            r = self.repos[repo]
            return {p: b.data for p, b in self._resolve(r, revision).files.items()}

    def commits(self, repo: str) -> list[str]:
        with self._lock:
            return list(self.repos[repo].history["main"])

    def downloads(self, repo: str, path: str) -> list[Request]:
        """The GETs that served (or tried to serve) this file's bytes, oldest first."""
        ends = (f"/{repo}/resolve/", f"/cdn/{repo}/")
        return [
            q
            for q in list(self.log)
            if q.method == "GET" and any(e in q.path for e in ends) and q.path.endswith("/" + path)
        ]

    # --- internals ------------------------------------------------------------------------

    def _commit(
        self, r: Repo, branch: str, files: dict[str, Blob], title: str, sha: str | None = None
    ) -> str:
        with self._lock:
            self._counter += 1
            parent = r.history[branch][-1] if r.history[branch] else ""
            listing = "".join(f"{p} {b.blob_id}\n" for p, b in sorted(files.items()))
            sha = (
                sha
                or hashlib.sha1(
                    f"{r.repo_id}\n{parent}\n{listing}{title}\n{self._counter}".encode()
                ).hexdigest()
            )
            r.commits[sha] = Commit(sha, files, title, _now())
            r.history[branch].append(sha)
            return sha

    def _resolve(self, r: Repo, revision: str) -> Commit:
        if r.history.get(revision):
            return r.commits[r.history[revision][-1]]
        if revision in r.commits:
            return r.commits[revision]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _user(self, token: str | None) -> dict | None:
        if token is None:
            return None
        if token not in self.tokens:
            raise HubError(401, INVALID_TOKEN)
        return self.tokens[token]

    def _owns(self, user: dict | None, namespace: str) -> bool:
        return user is not None and namespace in {user["name"], *(o["name"] for o in user["orgs"])}

    def _repo(
        self, repo_id: str, repo_type: str, token: str | None, *, files: bool = False
    ) -> Repo:
        user = self._user(token)
        r = self.repos.get(repo_id)
        if (
            r is None
            or r.repo_type != repo_type
            or (r.private and not self._owns(user, repo_id.split("/")[0]))
        ):
            raise HubError(404 if user else 401, "Repository not found", "RepoNotFound")
        if files and r.gated and not self._owns(user, repo_id.split("/")[0]):
            kind = "dataset" if repo_type == "dataset" else "model"
            if user is None:
                raise HubError(
                    401,
                    f"Access to {kind} {repo_id} is restricted. You must have access to it "
                    "and be authenticated to access it. Please log in.",
                    "GatedRepo",
                )
            if r.allowed is not None and token not in r.allowed:
                raise HubError(
                    403,
                    f"Access to {kind} {repo_id} is restricted and you are not in the "
                    f"authorized list. Visit {self.url}/{repo_id} to ask for access.",
                    "GatedRepo",
                )
        return r

    def _writer(self, namespace: str, token: str | None, kind: str = "model") -> dict:
        user = self._user(token)
        if user is None:
            raise HubError(401, "You must be authenticated to perform this action")
        access = user["auth"]["accessToken"]
        scopes = [
            p for s in access.get("fineGrained", {}).get("scoped", []) for p in s["permissions"]
        ]
        can_write = access["role"] in ("write", "admin") or "repo.write" in scopes
        if not (can_write and self._owns(user, namespace)):
            raise HubError(
                403,
                f'You don\'t have the rights to create a {kind} under the namespace "{namespace}"',
            )
        return user

    def _write_repo(self, repo_id: str, repo_type: str, token: str | None) -> Repo:
        r = self._repo(repo_id, repo_type, token)
        self._writer(repo_id.split("/")[0], token, repo_type)
        return r

    def info(self, r: Repo, c: Commit, blobs: bool = False) -> dict[str, Any]:
        """The repo's info document at a commit (``model_info`` without ``expand``)."""
        m = r.meta
        card = _front_matter(c.files["README.md"].data) if "README.md" in c.files else None
        card = dict(m.get("cardData") or card or {})
        if m.get("license"):
            card.setdefault("license", m["license"])
        tags = list(m.get("tags", []))
        tags += [t for t in ("gguf", "safetensors") if any(p.endswith("." + t) for p in c.files)]
        tags += [m[k] for k in ("library_name", "pipeline_tag") if m.get(k)]
        tags += [f"license:{card['license']}"] if card.get("license") else []
        info: dict[str, Any] = {
            "_id": hashlib.sha1(r.repo_id.encode()).hexdigest()[:24],
            "id": r.repo_id,
            "author": r.repo_id.split("/")[0],
            "sha": c.sha,
            "lastModified": m.get("lastModified", c.date),
            "createdAt": m.get("createdAt", r.created),
            "private": r.private,
            "disabled": False,
            "gated": "manual" if r.gated is True else r.gated,
            "downloads": m.get("downloads", 0),
            "likes": m.get("likes", 0),
            "trendingScore": m.get("trendingScore", 0),
            "tags": list(dict.fromkeys(tags)),
            "cardData": card or None,
            "siblings": [self._sibling(p, b, blobs) for p, b in sorted(c.files.items())],
            "usedStorage": sum(len(b.data) for b in c.files.values()),
        }
        if r.repo_type == "model":
            info.update(modelId=r.repo_id, spaces=[], library_name=m.get("library_name"))
            info.update(
                pipeline_tag=m.get("pipeline_tag"), config=m.get("config") or self._config(c)
            )
            info.update(
                safetensors=m.get("safetensors") or self._safetensors(c), gguf=m.get("gguf")
            )
        extra = {k: v for k, v in m.items() if k not in info and k != "license"}
        return {**info, **extra}

    @staticmethod
    def _sibling(path: str, b: Blob, blobs: bool) -> dict[str, Any]:
        if not blobs:
            return {"rfilename": path}
        s: dict[str, Any] = {"rfilename": path, "size": len(b.data), "blobId": b.blob_id}
        if b.lfs:
            s["lfs"] = {"sha256": b.sha256, "size": len(b.data), "pointerSize": len(b.pointer)}
        return s

    @staticmethod
    def _config(c: Commit) -> dict | None:
        out: dict[str, Any] = {}
        for name, keys in (
            ("config.json", ("architectures", "model_type")),
            ("tokenizer_config.json", ("chat_template", "bos_token", "eos_token", "pad_token")),
        ):
            try:
                doc = json.loads(c.files[name].data) if name in c.files else {}
            except ValueError:
                continue
            picked = {k: doc[k] for k in keys if isinstance(doc, dict) and k in doc}
            if picked and name == "config.json":
                out.update(picked)
            elif picked:
                out["tokenizer_config"] = picked
        return out or None

    @staticmethod
    def _safetensors(c: Commit) -> dict | None:
        params: dict[str, int] = {}
        for p, b in c.files.items():
            if p.endswith(".safetensors"):
                for k, v in _safetensors_params(b.data).items():
                    params[k] = params.get(k, 0) + v
        return {"parameters": params, "total": sum(params.values())} if params else None


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


class _Handler(BaseHTTPRequestHandler):
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
            _front_matter(json.loads(body).get("content", "").encode())
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
            r = hub.repos[repo_id] = Repo(repo_id, repo_type, private, False, {}, _now())
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
            lfs = _is_lfs(f["path"], f["size"], base64.b64decode(f["sample"]))
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


@contextmanager
def hub_env(tmp_path: Path, monkeypatch: Any) -> Iterator[HubServer]:
    """A HubServer with this process and its children pointed at it, Xet off, caches in tmp_path.

    ``huggingface_hub.constants`` are read at import, so the in-process ones are patched too;
    children (run_in_child) import afresh and read the environment.
    """
    import huggingface_hub.constants as hf_constants

    with HubServer() as server:
        env = {
            "HF_ENDPOINT": server.url,
            "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "LWQ_CACHE_DIR": str(tmp_path / "lwq"),
            "NO_PROXY": "127.0.0.1,localhost",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        for name in (
            "HF_TOKEN",
            "HF_HUB_CACHE",
            "HF_TOKEN_PATH",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ):
            monkeypatch.delenv(name, raising=False)
        hf = tmp_path / "hf"
        patched: tuple[tuple[str, object], ...] = (
            ("HF_HUB_DISABLE_XET", True),
            ("HF_HUB_OFFLINE", False),
            ("HF_HOME", str(hf)),
            ("HF_HUB_CACHE", str(hf / "hub")),
            ("HF_TOKEN_PATH", str(hf / "token")),
            ("HF_STORED_TOKENS_PATH", str(hf / "stored_tokens")),
        )
        for constant, setting in patched:
            monkeypatch.setattr(hf_constants, constant, setting)
        yield server

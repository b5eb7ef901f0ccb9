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

The HTTP side is ``hub_handler.Handler``. Fixture ``hub_server`` (tests/conftest.py): a fresh server per test via ``hub_env``, which sets
HF_ENDPOINT, HF_HOME and LWQ_CACHE_DIR (in tmp_path), HF_HUB_DISABLE_XET=1, HF_HUB_OFFLINE=0,
NO_PROXY, unsets HF_TOKEN/HF_HUB_CACHE/proxies, and patches the import-time
``huggingface_hub.constants`` (HF_HUB_DISABLE_XET, HF_HUB_OFFLINE, HF_HOME, HF_HUB_CACHE,
HF_TOKEN_PATH, HF_STORED_TOKENS_PATH) for this process; ENDPOINT is left alone on purpose: tests/conftest.py
points it (and HF_ENDPOINT) at a closed local port for the session, so code that forgets
``endpoint=`` fails at once instead of passing, and never reaches the internet. No tokens exist until ``add_token``.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

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


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def is_lfs(path: str, size: int, sample: bytes) -> bool:
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


def front_matter(card: bytes) -> dict[str, Any] | None:
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
        from hub_handler import Handler  # the HTTP side, which needs this module's types

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
        blobs = {p: Blob(d, p in lfs or is_lfs(p, len(d), d)) for p, d in files.items()}
        with self._lock:
            r = self.repos.get(repo)
            if r is None:
                r = self.repos[repo] = Repo(repo, repo_type, private, gated, {}, now())
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
        access: dict[str, Any] = {"displayName": f"{user}-token", "role": role, "createdAt": now()}
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
            r.commits[sha] = Commit(sha, files, title, now())
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
        card = front_matter(c.files["README.md"].data) if "README.md" in c.files else None
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

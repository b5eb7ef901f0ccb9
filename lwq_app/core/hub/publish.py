"""Publish quantized variants to the Hub: check and save a token, preview the card, upload.

``publish`` creates (or reuses) the repo and then makes ONE commit holding every GGUF, the
README (``card.model_card``), the plan JSON of each custom variant and the imatrix files the
variants were made with. The upload runs in a child process (``run_in_child``); cancel kills
it. The commit is the last request, so a cancelled upload leaves the remote ``main`` as it
was (the repo itself stays, if this call created it).

Transport: each file goes in as a file object that counts what is read of it, which gives
progress in bytes (``Phase.HASH`` while huggingface_hub hashes it for the LFS batch, then
``Phase.UPLOAD`` while it is sent). huggingface_hub sends file objects over the HTTP LFS
protocol (its Xet client takes only paths and bytes), so this is the transport in production
too, to huggingface.co as to the tests' loopback Hub (where ``HF_HUB_DISABLE_XET=1`` is also
set); the Hub accepts LFS uploads for Xet-backed repos.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..jobs.boundary import public_job
from ..jobs.child_runner import ChildContext, run_in_child
from ..jobs.errors import DownloadError, InputError, LwqError, OutputError
from ..jobs.paths import data_dir
from ..jobs.progress import (
    CancelToken,
    Phase,
    Phases,
    Progress,
    ProgressSink,
    Throttle,
    check,
    no_progress,
)
from ..modelfile.gguf_header import read_header
from ..modelfile.inventory import open_model
from ..results.project import ProjectState, load_state
from .access import HubAccess, hub_access, hub_errors, token_path
from .card import (
    check_repo_id,
    model_card,
    resolve_base_model,
    speed_hardware,
    variant_making,
)

# --- the token -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenInfo:
    """Who a token is and what it may do: ``role`` is ``read``, ``write`` or ``fineGrained``;
    ``scopes`` lists a fine-grained token's permissions (``global:…``, ``ENTITY:…``)."""

    user: str
    role: str
    scopes: tuple[str, ...]
    can_write: bool
    orgs: tuple[str, ...] = ()

    def may_write(self, repo: str) -> bool:
        """Whether this token may push to ``repo`` (its namespace: the user or an org)."""
        if self.role == "write":
            return True
        owner = repo.split("/")[0]
        return f"{owner}:repo.write" in self.scopes or "global:repo.write" in self.scopes


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def token_info(whoami: dict[str, Any]) -> TokenInfo:
    """A ``TokenInfo`` from the Hub's ``whoami-v2`` answer."""
    tok = _obj(_obj(whoami.get("auth")).get("accessToken"))
    role = str(tok.get("role") or "unknown")
    fine = _obj(tok.get("fineGrained"))
    scopes = [f"global:{perm}" for perm in fine.get("global") or ()]
    for entry in fine.get("scoped") or ():
        name = _obj(_obj(entry).get("entity")).get("name")
        scopes += [f"{name}:{perm}" for perm in _obj(entry).get("permissions") or ()]
    orgs = tuple(str(o["name"]) for o in whoami.get("orgs") or () if "name" in _obj(o))
    can_write = role == "write" or any(s.endswith(":repo.write") for s in scopes)
    return TokenInfo(str(whoami.get("name") or "?"), role, tuple(scopes), can_write, orgs)


@public_job("hub token check")
def check_token(token: str, access: HubAccess | None = None) -> TokenInfo:
    """Ask the Hub who ``token`` is (``whoami``); ``InputError`` if it is refused."""
    if not isinstance(token, str) or not token.strip():
        raise InputError("token: empty; paste a token from your account's Access Tokens page")
    access = replace(access or hub_access(token), token=token.strip())
    with hub_errors("token check", access):
        return token_info(access.api().whoami(token=token.strip()))


@public_job("hub token save")
def save_token(token: str, access: HubAccess | None = None) -> TokenInfo:
    """Check ``token`` (``check_token``), then save it where huggingface_hub's ``hf auth
    login`` does (``access.token_path()``), readable by this user only, atomically."""
    info = check_token(token, access)
    path = token_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".token.", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(token.strip())
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise OutputError(f"{path}: cannot save the token ({e.strerror or e})") from None
    return info


# --- the card --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishRequest:
    """Publish ``variants`` (GGUF files) to ``repo`` (``ORG/NAME``). ``base_model``: the
    model they quantize (default: recorded at download, else the GGUF's metadata);
    ``reference``: the float file sizes are compared with (loose files); ``project``: the
    project folder whose results table the card shows (default: the one listing every
    variant); ``card_text``: a card edited by the user, published as it is."""

    repo: str
    variants: tuple[Path, ...]
    base_model: str | None = None
    reference: Path | None = None
    private: bool = False
    token: str | None = None
    card_text: str | None = None
    project: Path | None = None
    license: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)


def _same(a: Path, b: Path) -> bool:
    return a == b or a.resolve() == b.resolve()


def find_project(variants: tuple[Path, ...]) -> Path | None:
    """The project folder whose variants include every one of ``variants``, if any."""
    root = data_dir() / "projects"
    if not root.is_dir():
        return None
    for folder in sorted(root.iterdir()):
        if not (folder / "project.json").is_file():
            continue
        try:
            state = load_state(folder)
        except LwqError:
            continue
        if all(any(_same(v.path, Path(p)) for v in state.variants) for p in variants):
            return folder
    return None


def _project_state(request: PublishRequest) -> ProjectState | None:
    """The project the card's table comes from: ``request.project``, else the one listing
    every variant; None for loose files."""
    folder = request.project or find_project(request.variants)
    return None if folder is None else load_state(Path(folder))


def _tables(request: PublishRequest, state: ProjectState | None) -> tuple[str, str]:
    """(the markdown tables, the float file the recipes quantize): the project's results
    table where the variants are a project's, else ``render_report`` of the files."""
    from ..results.compare import results_table
    from ..results.report import render_card, render_report

    if state is not None:
        chosen = tuple(
            v for v in state.variants if any(_same(v.path, Path(p)) for p in request.variants)
        )
        if state.eval_settings is not None and chosen:
            base = open_model(state.base_model)
            table = results_table(replace(state, variants=chosen), base, state.eval_settings)
            return render_card(table), Path(state.base_model).name
    reference = Path(request.reference) if request.reference is not None else None
    tables = render_report(list(request.variants), reference)
    return tables, reference.name if reference is not None else "BASE-F16.gguf"


def _license(request: PublishRequest) -> str | None:
    if request.license:
        return request.license
    for v in request.variants:
        lic = read_header(v).metadata.get("general.license")
        if isinstance(lic, str) and lic.strip():
            return lic.strip()
    return None


def check_publish(request: PublishRequest) -> None:
    """Every check before anything is sent: the repo id, the files (existing GGUFs, no two of
    one name)."""
    check_repo_id(request.repo)
    if not request.variants:
        raise InputError(f"publish {request.repo}: no variants given")
    names: set[str] = set()
    for v in request.variants:
        p = Path(v)
        if not p.is_file():
            raise InputError(f"{p}: no such model file")
        open_model(p)  # not a GGUF, or damaged: fails here naming the file
        if p.name in names:
            raise InputError(f"{p}: two variants named {p.name}; the repo keeps one per name")
        names.add(p.name)


def preview_card(request: PublishRequest) -> str:
    """The README.md ``publish`` would commit (``request.card_text`` when given)."""
    if request.card_text is not None:
        return request.card_text
    check_publish(request)
    state = _project_state(request)
    sources = [Path(request.reference)] if request.reference is not None else []
    if state is not None:
        sources += [Path(state.base_model), *state.sources]
    base_model = resolve_base_model(request.variants, request.base_model, sources)
    tables, source = _tables(request, state)
    making = [variant_making(Path(v), source) for v in request.variants]
    return model_card(
        repo=request.repo,
        base_model=base_model,
        tables=tables,
        making=making,
        hardware=speed_hardware(request.variants),
        license=_license(request),
        tags=request.tags,
    )


# --- the upload --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishResult:
    url: str
    commit: str
    files: tuple[str, ...]
    uploaded_bytes: int


def upload_files(request: PublishRequest, card: str) -> list[tuple[str, str | bytes]]:
    """(path in the repo, local path or bytes) of everything the commit holds."""
    out: list[tuple[str, str | bytes]] = [(Path(v).name, str(Path(v))) for v in request.variants]
    source = "BASE-F16.gguf"
    imatrices: dict[str, Path] = {}
    for v in request.variants:
        m = variant_making(Path(v), source)
        if m.plan is not None:
            out.append((f"plans/{m.name}.json", (json.dumps(m.plan, indent=1) + "\n").encode()))
        if m.imatrix is not None and m.imatrix_path is not None:
            imatrices.setdefault(m.imatrix, m.imatrix_path)
    out += [(name, str(p)) for name, p in imatrices.items() if name not in dict(out)]
    out.append(("README.md", card.encode("utf-8")))
    return out


@public_job("publish")
def publish(
    request: PublishRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> PublishResult:
    """Create or reuse ``request.repo`` and commit the variants and their card in one commit,
    in a child process (cancel kills it; the remote ``main`` is then unchanged)."""
    check(cancel)
    check_publish(request)
    access = hub_access(request.token)
    if access.offline:
        raise DownloadError(
            f"publish {request.repo}: HF_HUB_OFFLINE is set, so lwq does not reach the Hub"
        )
    if not access.token:
        raise InputError(
            f"publish {request.repo}: no token; log in (the app's Hub pane, `lwq hub login`, "
            "`hf auth login` or HF_TOKEN) with a token that may write"
        )
    card = preview_card(request)
    who = check_token(access.token, access)
    if not who.may_write(request.repo):
        raise InputError(
            f"publish {request.repo}: the token of {who.user} ({who.role}) may not write to "
            f"{request.repo.split('/')[0]}: use a 'write' token, or a fine-grained one with "
            "repo write access there"
        )
    files = upload_files(request, card)
    result: PublishResult = run_in_child(
        "lwq_app.core.hub.publish:child_publish",
        {"access": access, "repo": request.repo, "private": request.private, "files": files},
        progress=progress,
        cancel=cancel,
        job="publish",
        subject=request.repo,
        item_kind="file",
    )
    return result


class CountingReader(io.BufferedReader):
    """A file opened for reading that reports how many bytes were read of it (huggingface_hub
    reads it once to hash it, once to send it: ``phase`` says which)."""

    def __init__(self, path: str, on_read: Any) -> None:
        super().__init__(io.FileIO(path, "rb"), buffer_size=1 << 20)
        self._on_read = on_read
        self.name_in_repo = ""

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if data:
            self._on_read(len(data))
        return data

    def readinto(self, b: Any) -> int:
        n = super().readinto(b)
        if n:
            self._on_read(n)
        return n


class _ByteCount:
    """Bytes read so far in the phase (hash, then upload), reported throttled."""

    def __init__(self, phases: Phases, total: int) -> None:
        self.total = total
        self.phase = Phase.HASH
        self.done = 0
        self._sinks = {p: Throttle(phases.sink(p)) for p in (Phase.HASH, Phase.UPLOAD)}

    def add(self, n: int, item: str) -> None:
        self.done += n
        self._sinks[self.phase](Progress(self.phase, min(self.done, self.total), self.total, item))

    def next_phase(self) -> None:
        self._sinks[Phase.HASH](Progress(Phase.HASH, self.total, self.total))
        self.phase, self.done = Phase.UPLOAD, 0

    def finish(self) -> None:
        self._sinks[Phase.UPLOAD](Progress(Phase.UPLOAD, self.total, self.total))


def child_publish(
    ctx: ChildContext,
    *,
    access: HubAccess,
    repo: str,
    private: bool,
    files: list[tuple[str, str | bytes]],
) -> PublishResult:
    """In the child: environment first, then huggingface_hub; create the repo, hash, upload,
    commit."""
    from .access import apply_to_environment

    apply_to_environment(access)
    from huggingface_hub import CommitOperationAdd

    total = sum(os.path.getsize(f) if isinstance(f, str) else len(f) for _, f in files)
    phases = Phases(ctx.progress, [(Phase.HASH, 1), (Phase.UPLOAD, 4)])
    count = _ByteCount(phases, total)
    api = access.api()
    with hub_errors(repo, access):
        url = api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        ops, readers = [], []
        for name, src in files:
            if isinstance(src, bytes):
                ops.append(CommitOperationAdd(path_in_repo=name, path_or_fileobj=src))
                count.add(len(src), name)
                continue
            reader = CountingReader(src, lambda n, name=name: count.add(n, name))
            readers.append(reader)
            ops.append(CommitOperationAdd(path_in_repo=name, path_or_fileobj=reader))
        count.next_phase()
        try:
            info = api.create_commit(
                repo, ops, commit_message=f"lwq: {len(files) - 1} file(s) and the model card",
                repo_type="model",
            )  # fmt: skip
        finally:
            for r in readers:
                r.close()
    count.finish()
    return PublishResult(
        url=str(url) or access.url(repo),
        commit=str(info.oid),
        files=tuple(name for name, _ in files),
        uploaded_bytes=total,
    )

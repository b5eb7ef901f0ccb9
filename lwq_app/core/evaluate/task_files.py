"""The multiple-choice task files llama-perplexity reads, and its task sampling.

* HellaSwag: 6 lines per task (context, gold ending index 0-3, four endings).
* WinoGrande: CSV ``index,sentence,choice1,choice2,answer`` (``_`` marks the blank; answer
  1 or 2; the sentence may be quoted).
* ARC / MMLU / TruthfulQA: llama.cpp's binary multiple-choice layout — u32 task count,
  u32 byte offset of each task, then per task a string question and two answer sets
  (u32 n ≤ 100, n strings, n int32 labels); strings are u32 length + bytes, little-endian.

When fewer tasks than the file holds are asked for, the same tasks as llama-perplexity are
picked, in the same order: ``std::mt19937(1)`` with libstdc++'s ``uniform_int_distribution``
(HellaSwag) or llama.cpp's float scaling (WinoGrande, multiple choice).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from ..jobs.errors import InputError


class TaskKind(str, Enum):
    HELLASWAG = "hellaswag"
    WINOGRANDE = "winogrande"
    MULTIPLE_CHOICE = "multiple-choice"


@dataclass(frozen=True)
class ChoiceTask:
    """One task: the full texts to score, which are correct, and where it came from.

    For WinoGrande, ``texts`` are ``first+choice+second`` and ``bases`` ``first+choice``
    (the part llama.cpp skips when scoring)."""

    kind: TaskKind
    source: str  # "file:line" or "file: task N" for error messages
    texts: tuple[str, ...]
    labels: tuple[int, ...]  # 1 = correct
    bases: tuple[str, ...] = ()


class MT19937:
    """``std::mt19937``: the 32-bit Mersenne Twister, seeded like its constructor."""

    def __init__(self, seed: int) -> None:
        mt = [0] * 624
        mt[0] = seed & 0xFFFFFFFF
        for i in range(1, 624):
            mt[i] = (1812433253 * (mt[i - 1] ^ (mt[i - 1] >> 30)) + i) & 0xFFFFFFFF
        self._mt, self._i = mt, 624

    def __call__(self) -> int:
        mt = self._mt
        if self._i >= 624:
            for k in range(624):
                y = (mt[k] & 0x80000000) | (mt[(k + 1) % 624] & 0x7FFFFFFF)
                mt[k] = mt[(k + 397) % 624] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
            self._i = 0
        y = mt[self._i]
        self._i += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        return y ^ (y >> 18)

    def uniform(self, n: int) -> int:
        """libstdc++ ``uniform_int_distribution(0, n-1)`` (Lemire's method, 32-bit engine)."""
        product = self() * n
        low = product & 0xFFFFFFFF
        if low < n:
            threshold = (2**32 - n) % n
            while low < threshold:
                product = self() * n
                low = product & 0xFFFFFFFF
        return product >> 32


def hellaswag_order(n_total: int, n: int) -> list[int]:
    """Task indices llama-perplexity's HellaSwag picks: random draws without replacement
    (it shuffles even when all tasks are used)."""
    n = min(n, n_total)
    rng = MT19937(1)
    left = list(range(n_total))
    out = []
    for _ in range(n):
        out.append(left.pop(rng.uniform(len(left))))
    return out


def scaled_order(n_total: int, n: int) -> list[int]:
    """Task indices picked by WinoGrande and multiple-choice (float scaling, swap-remove)."""
    if n <= 0 or n >= n_total:
        return list(range(n_total))
    rng = MT19937(1)
    scale = np.float32(1.0) / (np.float32(1.0) + np.float32(2**32 - 1))
    aux = list(range(n_total))
    out = []
    for _ in range(n):
        j = int(scale * np.float32(rng()) * np.float32(len(aux)))
        out.append(aux[j])
        aux[j] = aux[-1]
        aux.pop()
    return out


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read task file ({e.strerror})") from None


def load_hellaswag(path: Path, n: int = 0) -> list[ChoiceTask]:
    lines = _read(path).decode("utf-8", "replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or len(lines) % 6:
        raise InputError(
            f"{path}: HellaSwag files have 6 lines per task; this one has {len(lines)} lines"
        )
    n_total = len(lines) // 6
    order = hellaswag_order(n_total, n if n > 0 else n_total)  # llama.cpp always shuffles
    tasks = []
    for idx in order:
        ctx, gold, *endings = lines[idx * 6 : idx * 6 + 6]
        line = idx * 6 + 2
        try:
            g = int(gold)
        except ValueError:
            raise InputError(f"{path}:{line}: gold ending must be 0-3, got {gold!r}") from None
        if not 0 <= g <= 3:
            raise InputError(f"{path}:{line}: gold ending must be 0-3, got {g}")
        tasks.append(
            ChoiceTask(
                TaskKind.HELLASWAG,
                f"{path}:{idx * 6 + 1}",
                tuple(f"{ctx} {e}" for e in endings),
                tuple(int(i == g) for i in range(4)),
            )
        )
    return tasks


def _csv_fields(line: str) -> list[str] | None:
    """llama.cpp's split: the first 4 commas outside double quotes."""
    commas, quoted = [], False
    for i, ch in enumerate(line):
        if quoted:
            quoted = ch != '"'
        elif ch == ",":
            commas.append(i)
            if len(commas) == 4:
                break
        elif ch == '"':
            quoted = True
    if len(commas) != 4:
        return None
    c0, c1, c2, c3 = commas
    quoted_sentence = line[c0 + 1 : c0 + 2] == '"'
    sentence = line[c0 + 2 : c1 - 1] if quoted_sentence else line[c0 + 1 : c1]
    return [line[:c0], sentence, line[c1 + 1 : c2], line[c2 + 1 : c3], line[c3 + 1 :]]


def load_winogrande(path: Path, n: int = 0) -> list[ChoiceTask]:
    text = _read(path).decode("utf-8", "replace")
    text = text[:-1] if text.endswith("\n") else text  # `-f` drops the final newline, and
    lines = text.split("\n")[:-1]  # llama.cpp's getline loop then never scores the last row
    rows: list[ChoiceTask] = []
    for no, line in enumerate(lines, 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        f = _csv_fields(line)
        if f is None:
            raise InputError(f"{path}:{no}: expected 5 comma-separated fields")
        answer = f[4].strip()
        if no == 1 and not answer.lstrip("-").isdigit():
            continue  # a header line
        if "_" not in f[1]:
            raise InputError(f"{path}:{no}: sentence has no '_' blank")
        if answer not in ("1", "2"):
            raise InputError(f"{path}:{no}: answer must be 1 or 2, got {answer!r}")
        first, second = f[1].split("_", 1)
        choices = (f[2], f[3])
        rows.append(
            ChoiceTask(
                TaskKind.WINOGRANDE,
                f"{path}:{no}",
                tuple(first + c + second for c in choices),
                (int(answer == "1"), int(answer == "2")),
                tuple(first + c for c in choices),
            )
        )
    if not rows:
        raise InputError(f"{path}: no WinoGrande tasks")
    return [rows[i] for i in scaled_order(len(rows), n)]


def load_multiple_choice(path: Path, n: int = 0) -> list[ChoiceTask]:
    data = _read(path)
    if len(data) < 4:
        raise InputError(f"{path}: not a llama.cpp multiple-choice file (too short)")
    (n_task,) = struct.unpack_from("<I", data, 0)
    if n_task == 0 or 4 + 4 * n_task > len(data):
        raise InputError(f"{path}: not a llama.cpp multiple-choice file ({n_task} tasks)")
    offsets = struct.unpack_from(f"<{n_task}I", data, 4)
    return [_mc_task(path, data, i, offsets[i]) for i in scaled_order(n_task, n)]


def _mc_task(path: Path, data: bytes, idx: int, pos: int) -> ChoiceTask:
    where = f"{path}: task {idx}"

    def u32() -> int:
        nonlocal pos
        if pos + 4 > len(data):
            raise InputError(f"{where}: truncated at byte {pos}")
        (v,) = struct.unpack_from("<I", data, pos)
        pos += 4
        return int(v)

    def string() -> str:
        nonlocal pos
        size = u32()
        if pos + size > len(data):
            raise InputError(f"{where}: string of {size} bytes runs past the end of the file")
        s = data[pos : pos + size].decode("utf-8", "replace")
        pos += size
        return s

    def answers() -> tuple[list[str], list[int]]:
        nonlocal pos
        k = u32()
        if k > 100:
            raise InputError(f"{where}: {k} answers (at most 100)")
        texts = [string() for _ in range(k)]
        if pos + 4 * k > len(data):
            raise InputError(f"{where}: truncated labels at byte {pos}")
        labels = list(struct.unpack_from(f"<{k}i", data, pos))
        pos += 4 * k
        return texts, labels

    question = string()
    mc1, labels = answers()
    answers()  # mc2: several correct answers, not scored (as in llama.cpp)
    if not question or not mc1 or any(not a for a in mc1):
        raise InputError(f"{where}: empty question or answer")
    return ChoiceTask(
        TaskKind.MULTIPLE_CHOICE,
        where,
        tuple(f"{question} {a}" for a in mc1),
        tuple(int(v == 1) for v in labels),
    )


def write_multiple_choice(path: Path, tasks: list[tuple[str, list[str], list[int]]]) -> None:
    """Write llama.cpp's binary layout (question, answers, labels; empty mc2)."""

    def s(x: str) -> bytes:
        b = x.encode()
        return struct.pack("<I", len(b)) + b

    blobs = []
    for q, answers, labels in tasks:
        body = s(q) + struct.pack("<I", len(answers)) + b"".join(s(a) for a in answers)
        body += struct.pack(f"<{len(labels)}i", *labels) + struct.pack("<I", 0)
        blobs.append(body)
    head = 4 + 4 * len(tasks)
    offsets, pos = [], head
    for b in blobs:
        offsets.append(pos)
        pos += len(b)
    path.write_bytes(struct.pack(f"<I{len(tasks)}I", len(tasks), *offsets) + b"".join(blobs))

"""Multiple-choice task files and scoring (HellaSwag, WinoGrande, llama.cpp's binary format)."""

from __future__ import annotations

import os
import random
import re
import struct
import subprocess
from pathlib import Path

import pytest

from lwq_app.core.evaluate.multiple_choice import TasksRequest, run_tasks
from lwq_app.core.evaluate.task_files import (
    MT19937,
    TaskKind,
    hellaswag_order,
    load_hellaswag,
    load_multiple_choice,
    load_winogrande,
    scaled_order,
    write_multiple_choice,
)
from lwq_app.core.jobs.errors import InputError

WORDS = ["red", "green", "blue", "black", "white", "yellow", "orange", "purple", "brown", "pink"]
NOISE = ["zebra quantum", "seventeen oceans", "volcano pencil", "marble orchestra", "tulip engine"]


def pattern_task(rng: random.Random) -> tuple[str, str, list[str]]:
    """A context that repeats a 3-word cycle; the correct ending continues it."""
    cycle = rng.sample(WORDS, 3)
    ctx = " ".join(cycle * 4)
    right = " ".join(cycle * 2)
    wrong = [" ".join(rng.sample(NOISE, 2)) for _ in range(3)]
    return ctx, right, wrong


def write_hellaswag(path: Path, n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    lines, golds = [], []
    for _ in range(n):
        ctx, right, wrong = pattern_task(rng)
        gold = rng.randrange(4)
        endings = [*wrong[:gold], right, *wrong[gold:]]
        lines += [ctx, str(gold), *endings]
        golds.append(gold)
    path.write_text("\n".join(lines) + "\n")
    return golds


def write_winogrande(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    rows = ["index,sentence,option1,option2,answer"]
    for i in range(n):
        cycle = rng.sample(WORDS, 3)
        a, b = cycle[0], rng.choice([w for w in WORDS if w not in cycle])
        ans = rng.choice([1, 2])
        o1, o2 = (a, b) if ans == 1 else (b, a)
        sentence = " ".join(cycle * 4) + " _ " + " ".join(cycle[1:] + cycle * 2)
        rows.append(f'{i},"{sentence}",{o1},{o2},{ans}')
    path.write_text("\n".join(rows) + "\n")


def write_mc(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    tasks = []
    for _ in range(n):
        ctx, right, wrong = pattern_task(rng)
        k = rng.choice([2, 3, 4])
        gold = rng.randrange(k)
        answers = wrong[: k - 1]
        answers.insert(gold, right)
        tasks.append((ctx, answers, [int(i == gold) for i in range(k)]))
    write_multiple_choice(path, tasks)


# --- fast: formats and sampling ----------------------------------------------------------------


def test_sampling_is_llama_perplexitys() -> None:
    """Sequences printed by a C++ program with std::mt19937(1) (g++ 12, libstdc++)."""
    r = MT19937(1)
    assert [r(), r(), r()] == [1791095845, 4282876139, 3093770124]
    assert hellaswag_order(50, 10) == [20, 49, 35, 45, 0, 6, 15, 48, 8, 12]
    assert scaled_order(50, 10) == [20, 48, 34, 43, 0, 5, 13, 42, 6, 9]
    assert scaled_order(5, 0) == [0, 1, 2, 3, 4]


def test_formats_parse(tmp_path: Path) -> None:
    golds = write_hellaswag(tmp_path / "hs.txt", 5, 1)
    hs = load_hellaswag(tmp_path / "hs.txt")
    order = hellaswag_order(5, 5)
    assert [t.labels.index(1) for t in hs] == [golds[i] for i in order]
    write_winogrande(tmp_path / "wg.csv", 4, 2)
    wg = load_winogrande(tmp_path / "wg.csv")
    assert len(wg) == 3 and all(len(t.texts) == 2 and len(t.bases) == 2 for t in wg)
    assert all(t.texts[0].startswith(t.bases[0]) for t in wg)
    write_mc(tmp_path / "mc.bin", 6, 3)
    mc = load_multiple_choice(tmp_path / "mc.bin")
    assert len(mc) == 6 and all(sum(t.labels) == 1 for t in mc)
    assert len(load_multiple_choice(tmp_path / "mc.bin", 3)) == 3


def test_malformed_files_name_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "hs.txt"
    p.write_text("a\nb\nc\n")
    with pytest.raises(InputError, match=r"hs\.txt: .*6 lines per task.*3 lines"):
        load_hellaswag(p)
    p.write_text("ctx\nx\ne1\ne2\ne3\ne4\n")
    with pytest.raises(InputError, match=r"hs\.txt:2: gold ending"):
        load_hellaswag(p)
    w = tmp_path / "wg.csv"
    w.write_text("0,A _ b,x,y,1\n1,no blank here,x,y,2\n2,A _ b,x,y,1\n")
    with pytest.raises(InputError, match=r"wg\.csv:2: sentence has no '_'"):
        load_winogrande(w)
    w.write_text("0,A _ b,x,y,3\n1,A _ b,x,y,1\n")
    with pytest.raises(InputError, match=r"wg\.csv:1: answer must be 1 or 2"):
        load_winogrande(w)
    m = tmp_path / "mc.bin"
    write_mc(m, 2, 0)
    m.write_bytes(m.read_bytes()[:-20])
    with pytest.raises(InputError, match=r"mc\.bin: task 1: "):
        load_multiple_choice(m)
    m.write_bytes(struct.pack("<II", 1, 8) + struct.pack("<I", 0) + struct.pack("<I", 0) * 2)
    with pytest.raises(InputError, match=r"mc\.bin: task 0: empty question"):
        load_multiple_choice(m)


# --- slow: scoring with the real model ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(TaskKind))
def test_scorer_finds_the_unambiguous_answer(kind: TaskKind, smollm2: Path, tmp_path: Path) -> None:
    path = tmp_path / "tasks"
    {TaskKind.HELLASWAG: write_hellaswag, TaskKind.WINOGRANDE: write_winogrande,
     TaskKind.MULTIPLE_CHOICE: write_mc}[kind](path, 8, 7)  # fmt: skip
    r = run_tasks(TasksRequest(smollm2, kind, path, n_tasks=0, n_ctx=256, threads=2))
    assert r.n_tasks == (7 if kind == TaskKind.WINOGRANDE else 8)  # llama.cpp skips the last row
    assert r.score == 100.0 and r.stderr == 0.0, r.correct
    assert 0 < r.random_chance < 100


# opt-in: the reference tools are not built in CI (see tests/golden/make_golden.py)
NATIVE = Path(os.environ.get("LWQ_LLAMA_TOOLS", "/nonexistent")) / "llama-perplexity"


def wiki_tasks(folder: Path, wiki: str, n: int = 40) -> None:
    """Harder tasks from wiki sentences (the next sentence vs random ones), so a 135M model
    gets some wrong: the per-task verdicts then tell two scorers apart."""
    sents = [s.strip() for s in re.split(r"(?<=[.!?]) ", wiki.replace("\n", " "))]
    sents = [s for s in sents if 40 < len(s) < 160]
    rng = random.Random(5)
    lines, rows, mc = [], [], []
    for k in range(n):
        i, gold = rng.randrange(len(sents) - 1), rng.randrange(4)
        ends = [sents[rng.randrange(len(sents))] for _ in range(3)]
        ends.insert(gold, sents[i + 1])
        lines += [sents[i], str(gold), *ends]
        words = sents[rng.randrange(len(sents))].replace(",", " ").replace('"', " ").split()
        j = rng.randrange(1, len(words) - 1)
        a, b = words[j], rng.choice(sents).split()[1].replace(",", "").replace('"', "")
        words[j], ans = "_", rng.choice([1, 2])
        o1, o2 = (a, b) if ans == 1 else (b, a)
        rows.append(f'{k},"{" ".join(words)}",{o1},{o2},{ans}')
        kk = rng.choice([2, 3, 4])
        g = rng.randrange(kk)
        answers = [sents[rng.randrange(len(sents))] for _ in range(kk - 1)]
        answers.insert(g, sents[i + 1])
        mc.append((sents[i], answers, [int(x == g) for x in range(kk)]))
    (folder / "hs.txt").write_text("\n".join(lines) + "\n")
    (folder / "wg.csv").write_text("\n".join(rows) + "\n")
    write_multiple_choice(folder / "mc.bin", mc)


def native_verdicts(args: list[str]) -> tuple[bool, ...]:
    """Per-task right/wrong from llama-perplexity's running accuracy column."""
    out = subprocess.run([str(NATIVE), *args], capture_output=True, text=True, check=True).stdout
    acc = [
        float(ln.split("\t")[1].rstrip("%")) for ln in out.splitlines() if re.match(r"^\d+\t", ln)
    ]
    done = [round(a * (i + 1) / 100) for i, a in enumerate(acc)]
    return tuple(b > a for a, b in zip([0, *done], done, strict=False))


@pytest.mark.slow
@pytest.mark.skipif(not NATIVE.exists(), reason="set LWQ_LLAMA_TOOLS to a llama.cpp bin folder")
def test_per_task_verdicts_equal_llama_perplexity(
    smollm2: Path, tmp_path: Path, wiki_text: str
) -> None:
    wiki_tasks(tmp_path, wiki_text[:400_000])
    common = ["-m", str(smollm2), "-c", "256", "-t", "2"]
    cases = [
        (TaskKind.HELLASWAG, "hs.txt", ["-f", "--hellaswag", "--hellaswag-tasks"]),
        (TaskKind.WINOGRANDE, "wg.csv", ["-f", "--winogrande", "--winogrande-tasks"]),
        (
            TaskKind.MULTIPLE_CHOICE,
            "mc.bin",
            ["-bf", "--multiple-choice", "--multiple-choice-tasks"],
        ),
    ]
    for kind, name, (flag, mode, count) in cases:
        f = tmp_path / name
        want = native_verdicts([*common, flag, str(f), mode, count, "12"])
        got = run_tasks(TasksRequest(smollm2, kind, f, n_tasks=12, n_ctx=256, threads=2))
        assert got.correct == want, kind
        assert 0 < got.n_correct < 12, kind  # the comparison means something

"""``lwq convert``: llama.cpp's vendored converter, isolated in a child, round-trips SmolLM2.

The round trip: the packaged SmolLM2 Q4_1 GGUF loaded with transformers (``gguf_file=``,
dequantized to float32), saved as safetensors with its tokenizer, converted back to F16 by
``lwq convert`` → every tensor byte-identical to lwq's F16 upcast of the same GGUF, the
metadata that matters equal record for record, the same greedy completion. Plus the errors a
folder can earn before a child starts, cancel, and the isolation of the vendored ``gguf``.
"""

from __future__ import annotations

import gc
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lwq_app.cli.main import build_parser, main
from lwq_app.core.hub.convert import (
    RUNNER,
    VENDORED,
    ConvertRequest,
    convert_model,
    inspect_source,
    supported_architectures,
)
from lwq_app.core.jobs.errors import Cancelled, InputError, JobFailed
from lwq_app.core.jobs.progress import CancelToken, Phase, Progress
from lwq_app.core.modelfile.gguf_header import GGUFHeader, read_header

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "The capital of France is"
#: keys the round trip may not keep: the naming the converter takes from the folder's name
#: (or leaves out) and a default it does not write (add_space_prefix false)
NAMING = {
    "general.name", "general.basename", "general.finetune", "general.languages",
    "general.license", "general.organization", "tokenizer.ggml.add_space_prefix",
}  # fmt: skip
#: the converter also writes the head sizes that the original left to their default
ADDED = {"llama.attention.key_length": 64, "llama.attention.value_length": 64}


# --- the round trip ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_folder(smollm2_q4_1: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 as transformers sees it, saved as a Hugging Face folder (about 20 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("hf") / "SmolLM2-135M-Instruct"
    where, name = str(smollm2_q4_1.parent), smollm2_q4_1.name
    model = AutoModelForCausalLM.from_pretrained(where, gguf_file=name)
    tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
    # transformers 5 marks a model loaded from a GGUF as "quantized with gguf" and refuses to
    # save it, although the legacy loader (llama here) has already dequantized every weight to
    # float32: drop that mark, keep the float32 weights as they are
    assert all(p.dtype.is_floating_point and p.dtype.itemsize == 4 for p in model.parameters())
    quantizer: Any = model.hf_quantizer
    quantizer.remove_quantization_config(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    gc.collect()
    return out


def _records(header: GGUFHeader) -> dict[str, bytes]:
    """Every key/value record of a GGUF, raw (string arrays compared byte for byte)."""
    with header.path.open("rb") as f:
        blob = f.read(header.data_start)
    return {k: blob[a:b] for k, (a, b) in header.kv_spans.items()}


@pytest.mark.slow
def test_round_trip_is_bit_identical_to_the_f16_upcast(
    hf_folder: Path,
    smollm2_f16: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lwq_app.core.evaluate.generate import GenerateRequest, generate
    from lwq_app.core.hub.provenance import record_source, source_of

    commit = "c0ffee" * 6 + "c0ff"
    record_source(hf_folder, "HuggingFaceTB/SmolLM2-135M-Instruct", commit)
    out = tmp_path / "smollm2-roundtrip-f16.gguf"
    assert main(["convert", str(hf_folder), "--type", "F16", "-o", str(out)]) == 0
    cli = capsys.readouterr()
    assert cli.out.strip() == str(out)
    assert f"wrote {out} (llama, 272 tensors, F16" in cli.err
    assert not list(tmp_path.glob("*.lwq-tmp"))

    ref, got = read_header(smollm2_f16), read_header(out)
    ref_tensors = {t.name: t for t in ref.tensors}
    got_tensors = {t.name: t for t in got.tensors}
    assert set(got_tensors) == set(ref_tensors) and len(ref_tensors) == 272
    same = [
        name
        for name, t in ref_tensors.items()
        if (g := got_tensors[name]).type_id == t.type_id
        and g.shape == t.shape
        and np.array_equal(got.tensor_array(g).view(np.uint8), ref.tensor_array(t).view(np.uint8))
    ]
    assert len(same) == 272, sorted(set(ref_tensors) - set(same))[:10]

    ref_kv, got_kv = _records(ref), _records(got)
    differ = sorted(k for k in ref_kv.keys() & got_kv.keys() if ref_kv[k] != got_kv[k])
    assert set(differ) <= NAMING, differ  # the naming follows the folder's name here
    assert got.metadata["general.name"] == "SmolLM2 135M Instruct"
    assert set(ref_kv) - set(got_kv) <= NAMING
    assert {k: got.metadata[k] for k in set(got_kv) - set(ref_kv)} == ADDED
    for key in (  # what the engine reads: all equal, record for record (above)
        "llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon", "llama.context_length",
        "tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type",
        "tokenizer.ggml.pre", "tokenizer.chat_template", "tokenizer.ggml.eos_token_id",
        "general.file_type",
    ):  # fmt: skip
        assert key in got_kv and got_kv[key] == ref_kv[key], key
    assert got.metadata["llama.context_length"] == 8192

    source = source_of(out)
    assert source is not None and (source.repo, source.commit) == (
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        commit,
    )

    want = generate(GenerateRequest(smollm2_f16, PROMPT, n_tokens=16)).text
    assert want.strip()
    assert generate(GenerateRequest(out, PROMPT, n_tokens=16)).text == want


@pytest.mark.slow
def test_cancel_mid_conversion_leaves_no_file(hf_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "cancelled.gguf"
    token = CancelToken()
    seen: list[Progress] = []

    def sink(p: Progress) -> None:
        seen.append(p)
        if p.done >= 1 and p.total > 1:
            token.cancel()

    with pytest.raises(Cancelled):
        convert_model(ConvertRequest(hf_folder, "bf16", out), progress=sink, cancel=token)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temp file either
    assert all(p.phase is Phase.CONVERT for p in seen)
    tensors = [p for p in seen if p.total > 1]
    assert tensors and tensors[0].total == 272 and tensors[-1].done < 272
    assert tensors[-1].item.endswith(".weight")


# --- what the folder lacks: one line, before any child -------------------------------------


def _tiny_folder(path: Path, arch: str = "LlamaForCausalLM", tokenizer: bool = True) -> Path:
    """A 2-layer random llama-shaped folder: config, one safetensors file, a tokenizer."""
    from safetensors.numpy import save_file

    path.mkdir(parents=True)
    config = {
        "architectures": [arch], "model_type": "llama", "hidden_size": 16,
        "intermediate_size": 32, "num_attention_heads": 2, "num_key_value_heads": 2,
        "num_hidden_layers": 1, "vocab_size": 8, "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    }  # fmt: skip
    (path / "config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(0)
    save_file(
        {"model.embed_tokens.weight": rng.standard_normal((8, 16)).astype(np.float32)},
        str(path / "model.safetensors"),
    )
    if tokenizer:
        from tokenizers import Tokenizer
        from tokenizers.models import WordLevel

        vocab = {w: i for i, w in enumerate(["<unk>", "a", "b", "c", "d", "e", "f", "g"])}
        Tokenizer(WordLevel(vocab, unk_token="<unk>")).save(str(path / "tokenizer.json"))
    return path


def _cli_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("lwq: error: "), err
    return err


def test_an_unsupported_architecture_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _tiny_folder(tmp_path / "notreal", arch="NotARealForCausalLM")
    out = tmp_path / "out.gguf"
    err = _cli_error(capsys, ["convert", str(src), "--type", "F16", "-o", str(out)])
    assert "NotARealForCausalLM" in err and "not supported" in err
    assert not out.exists() and not list(tmp_path.glob("*.lwq-tmp"))
    assert "LlamaForCausalLM" in supported_architectures()


def test_the_converter_itself_names_an_unsupported_architecture(tmp_path: Path) -> None:
    """Past the pre-check (run the runner directly): the converter's own refusal comes back
    as an ``unsupported`` error naming the architecture, after the vendored gguf loaded."""
    src = _tiny_folder(tmp_path / "notreal", arch="NotARealForCausalLM")
    r = subprocess.run(
        [sys.executable, "-I", str(RUNNER), "--vendor", str(VENDORED), "--",
         str(src), "--outtype", "f16", "--outfile", str(tmp_path / "x.gguf")],
        capture_output=True, timeout=300,
    )  # fmt: skip
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 1, r.stderr[-2000:]
    assert events[0]["event"] == "isolated"
    assert Path(events[0]["gguf"]).is_relative_to((VENDORED / "gguf-py" / "gguf").resolve())
    assert events[-1]["kind"] == "unsupported"
    assert events[-1]["architecture"] == "NotARealForCausalLM"
    assert not (tmp_path / "x.gguf").exists()


def test_a_failure_in_the_converter_is_one_line_with_its_reason(tmp_path: Path) -> None:
    """A folder that passes the checks but that the converter gives up on (a word-level
    tokenizer it has no pre-tokenizer for): ``JobFailed`` quoting its reason, its log kept."""
    src = _tiny_folder(tmp_path / "wordlevel")
    out = tmp_path / "out.gguf"
    with pytest.raises(JobFailed) as e:
        convert_model(ConvertRequest(src, "F16", out))
    message = str(e.value)
    assert "\n" not in message
    assert "BPE pre-tokenizer was not recognized" in message and "no output was written" in message
    log = Path(message.rpartition("the converter's log is ")[2])
    assert log.is_file() and "Traceback" in log.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wordlevel"]


def test_a_missing_tokenizer_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _tiny_folder(tmp_path / "notok", tokenizer=False)
    err = _cli_error(capsys, ["convert", str(src), "-o", str(tmp_path / "o.gguf")])
    assert f"{src / 'tokenizer.json'}: missing" in err


def test_missing_config_weights_and_shards_are_named(tmp_path: Path) -> None:
    src = _tiny_folder(tmp_path / "m")
    (src / "config.json").rename(src / "config.bak")
    with pytest.raises(InputError, match=r"config\.json: missing"):
        inspect_source(src)
    (src / "config.bak").rename(src / "config.json")
    (src / "model.safetensors").rename(src / "model-00001-of-00002.safetensors")
    index = {
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
        }
    }
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match=r"model-00002-of-00002\.safetensors: missing"):
        inspect_source(src)
    (src / "model.safetensors.index.json").unlink()
    found = inspect_source(src)
    assert found.architecture == "LlamaForCausalLM" and found.parameters == 8 * 16
    (src / "model-00001-of-00002.safetensors").unlink()
    with pytest.raises(InputError, match=r"model\.safetensors: missing"):
        inspect_source(src)
    with pytest.raises(InputError, match="not BF8"):
        convert_model(ConvertRequest(src, "BF8", tmp_path / "o.gguf"))


def test_type_and_outtype_take_any_case() -> None:
    parser = build_parser()
    a = parser.parse_args(["convert", "d", "--outtype", "bf16", "-o", "x.gguf"])
    assert (a.type, a.source, a.output) == ("BF16", "d", "x.gguf")
    assert parser.parse_args(["convert", "d", "--type", "f32", "-o", "x.gguf"]).type == "F32"
    assert parser.parse_args(["convert", "d", "-o", "x.gguf"]).type == "F16"
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["convert", "d", "--type", "q8_0", "-o", "x.gguf"])
    assert e.value.code == 2


# --- the vendored converter ---------------------------------------------------------------


def test_the_vendored_files_match_their_manifest() -> None:
    spec = importlib.util.spec_from_file_location(
        "vendor_llama_cpp", ROOT / "packaging" / "vendor_llama_cpp.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.check(VENDORED) == []
    assert "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e" in (
        VENDORED / "VENDORED.md"
    ).read_text(encoding="utf-8")


def test_the_app_keeps_pypi_gguf_while_the_vendored_one_differs(tmp_path: Path) -> None:
    import gguf

    assert importlib.metadata.version("gguf") == "0.19.0"
    assert not Path(gguf.__file__).resolve().is_relative_to(VENDORED.resolve())
    assert not any(Path(p).resolve() == VENDORED.resolve() for p in sys.path if p)
    ours = (VENDORED / "gguf-py" / "gguf" / "constants.py").read_bytes()
    assert ours != (Path(gguf.__file__).parent / "constants.py").read_bytes()
    # a runner that finds no vendored gguf-py refuses to run with the app's
    r = subprocess.run(
        [sys.executable, "-I", str(RUNNER), "--vendor", str(tmp_path), "--", str(tmp_path)],
        capture_output=True, timeout=120,
    )  # fmt: skip
    (event,) = (json.loads(line) for line in r.stdout.splitlines())
    assert r.returncode == 3 and event["kind"] == "isolation"
    assert "not from the vendored" in event["message"]

"""Hub search (``search``, ``size_estimate``): the size estimates against the core's own plans and llama.cpp's KV cache, and the
search and details against the loopback Hub with the real huggingface_hub client.

The estimate from a config's shapes builds the GGUF tensor list a conversion makes and runs
the stock mixes' rules on it: for SmolLM2's shapes that list must be the real file's (same
fingerprint) and every mix exactly the size ``plan_from_preset`` gives the real model; the KV
cache must be what llama.cpp allocates for the same context (``measure_buffers``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lwq_app.core.evaluate.memory_fit import measure_buffers
from lwq_app.core.hub.search import SearchRequest, check_request
from lwq_app.core.hub.size_estimate import (
    REFERENCE,
    SEARCH_MIXES,
    Shapes,
    estimate_sizes,
    fits,
    shaped_model,
)
from lwq_app.core.jobs.errors import DownloadError, InputError
from lwq_app.core.modelfile.inventory import open_model
from lwq_app.core.plan.quant_plan import plan_from_preset

GIB = 1 << 30
#: SmolLM2-135M-Instruct's config.json, as the Hub has it (the fields the estimate reads)
SMOLLM2_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
    "num_hidden_layers": 30,
    "num_key_value_heads": 3,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
}


def test_estimate_from_config_is_the_real_files_plan(smollm2_f16: Path) -> None:
    shapes = Shapes.from_config(SMOLLM2_CONFIG)
    assert shapes is not None and shapes.head_dim == 64
    real = open_model(smollm2_f16)
    synthetic = shaped_model(shapes)
    assert synthetic.fingerprint() == real.fingerprint()  # same names and shapes
    est = estimate_sizes(134_515_008, shapes, 4096)
    assert est.f16_bytes == real.tensor_data_bytes
    for mix in SEARCH_MIXES:
        assert est.sizes[mix] == plan_from_preset(real, mix).size_bytes, mix
    assert "estimate" in est.note


def test_kv_cache_is_what_llama_cpp_allocates(smollm2_f16: Path) -> None:
    shapes = Shapes.from_config(SMOLLM2_CONFIG)
    assert shapes is not None
    measured = measure_buffers(smollm2_f16, 4096)  # llama.cpp's "KV buffer size = 90.00 MiB"
    assert shapes.kv_cache_bytes(4096) == 90 << 20
    assert abs(measured.kv_cache - (90 << 20)) <= 0.01 * (1 << 20)  # the log's 2 decimals


def test_parameter_count_alone_and_the_fit() -> None:
    # an 8B llama from its parameter count: Q4_K_M about 4.9 GB, as llama.cpp's files are
    params = shaped_model(REFERENCE).n_params
    rough = estimate_sizes(params, None, 4096)
    assert rough.kv_bytes is None and "rough estimate" in rough.note
    assert rough.f16_bytes == params * 2
    assert 4.8e9 < rough.sizes["Q4_K_M"] < 5.0e9
    assert list(rough.sizes) == list(SEARCH_MIXES)
    # with the shapes: the same sizes (same model) and the KV cache for the fit
    shaped = estimate_sizes(params, REFERENCE, 4096)
    assert shaped.kv_bytes == 2 * 32 * 4096 * 8 * 128 * 2  # 512 MiB
    assert abs(shaped.sizes["Q4_K_M"] - rough.sizes["Q4_K_M"]) < 1e6
    fit = fits(shaped, 8 * GIB)
    assert fit == {
        "F16": False, "Q8_0": False, "Q6_K": True, "Q5_K_M": True, "Q4_K_M": True,
        "Q3_K_M": True, "Q2_K": True,
    }  # fmt: skip
    assert fits(shaped, None) == {}
    assert estimate_sizes(None, None, 4096).sizes == {}


def test_config_without_shapes_and_bad_requests() -> None:
    assert (
        Shapes.from_config({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}) is None
    )
    assert Shapes.from_config(None) is None
    assert Shapes.from_config({**SMOLLM2_CONFIG, "hidden_size": 0}) is None
    wrapped = Shapes.from_config({"model_type": "x", "text_config": SMOLLM2_CONFIG})
    assert wrapped is not None and wrapped.n_layer == 30
    for bad, match in (
        (SearchRequest(sort="newest"), "--sort"),
        (SearchRequest(format="onnx"), "format"),
        (SearchRequest(limit=0), "--limit"),
        (SearchRequest(context=4), "--context"),
        (SearchRequest(target_memory=-1), "--target-memory"),
    ):
        with pytest.raises(InputError, match=match):
            check_request(bad)


# --- against the loopback Hub ------------------------------------------------------------------


def _safetensors_header(config: dict) -> bytes:
    """A safetensors file of SmolLM2's tensor names and shapes with no data: the Hub counts the
    parameters from the header, and so does a header read over ``Range``."""
    import json
    import struct

    h, ff, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    kv = config["num_key_value_heads"] * h // config["num_attention_heads"]
    shapes: dict[str, list[int]] = {"model.embed_tokens.weight": [v, h], "model.norm.weight": [h]}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "self_attn.q_proj.weight": [h, h], p + "self_attn.k_proj.weight": [kv, h],
            p + "self_attn.v_proj.weight": [kv, h], p + "self_attn.o_proj.weight": [h, h],
            p + "mlp.gate_proj.weight": [ff, h], p + "mlp.up_proj.weight": [ff, h],
            p + "mlp.down_proj.weight": [h, ff], p + "input_layernorm.weight": [h],
            p + "post_attention_layernorm.weight": [h],
        })  # fmt: skip
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = 2 * shape[0] * (shape[1] if len(shape) > 1 else 1)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    body = json.dumps(header).encode()
    return struct.pack("<Q", len(body)) + body


LLAMA_8B = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
    "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False,
}  # fmt: skip


@pytest.fixture
def hub(hub_server: Any) -> Any:
    import json

    s = hub_server
    s.add_token("hf_alice", "alice", "read")
    s.add_model(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        {"config.json": json.dumps(SMOLLM2_CONFIG).encode(),
         "model.safetensors": _safetensors_header(SMOLLM2_CONFIG),
         "tokenizer.json": b"{}", "pytorch_model.bin": b"\0" * 64},
        card="---\nlicense: apache-2.0\n---\n# SmolLM2\n",
        meta={"pipeline_tag": "text-generation", "library_name": "transformers",
              "downloads": 900, "likes": 50, "trendingScore": 5,
              "lastModified": "2025-01-01T00:00:00.000Z"},
    )  # fmt: skip
    s.add_model(
        "bartowski/SmolLM2-135M-Instruct-GGUF",
        {"SmolLM2-135M-Instruct-Q4_K_M.gguf": b"GGUF" + b"\0" * 60,
         "SmolLM2-135M-Instruct-f16.gguf": b"GGUF" + b"\0" * 60},
        meta={"pipeline_tag": "text-generation", "downloads": 5000, "likes": 10,
              "trendingScore": 1, "license": "apache-2.0",
              "lastModified": "2025-03-01T00:00:00.000Z",
              "gguf": {"total": 134515008, "architecture": "llama", "context_length": 8192}},
    )  # fmt: skip
    s.add_model(
        "meta-llama/Llama-3.1-8B-Instruct",
        {"config.json": json.dumps(LLAMA_8B).encode(), "model.safetensors": b"\0" * 8},
        gated=True,
        meta={"pipeline_tag": "text-generation", "downloads": 100_000, "likes": 4000,
              "trendingScore": 90, "license": "llama3.1",
              "lastModified": "2024-09-01T00:00:00.000Z",
              "safetensors": {"parameters": {"BF16": 8030261248}, "total": 8030261248}},
    )  # fmt: skip
    s.add_model(
        "sentence-transformers/all-MiniLM-L6-v2",
        {"config.json": b'{"model_type": "bert"}', "model.safetensors": b"\0" * 8},
        meta={"pipeline_tag": "sentence-similarity", "downloads": 10**7},
    )  # fmt: skip
    return s


def _repos(result: Any) -> list[str]:
    return [h.repo for h in result.hits]


def test_search_filters_sorts_and_estimates(hub: Any) -> None:
    from lwq_app.core.hub.search import search_models

    everything = search_models(SearchRequest())
    assert _repos(everything) == [  # text-generation only, most downloaded first
        "meta-llama/Llama-3.1-8B-Instruct", "bartowski/SmolLM2-135M-Instruct-GGUF",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
    ]  # fmt: skip
    assert everything.endpoint == hub.url
    llama, gguf_repo, smol = everything.hits
    assert (llama.architecture, llama.parameters, llama.license, llama.gated) == (
        "LlamaForCausalLM", 8030261248, "llama3.1", True,
    )  # fmt: skip
    assert (smol.parameters, smol.license, smol.gated, smol.downloads) == (
        134_515_008, "apache-2.0", False, 900,
    )  # fmt: skip
    assert smol.formats == ("safetensors",) and gguf_repo.formats == ("gguf",)
    assert (gguf_repo.architecture, gguf_repo.parameters) == ("llama", 134_515_008)
    assert smol.updated == "2025-01-01T00:00:00Z"
    # without a target: sizes from the parameter count, no fit, no config fetched
    assert smol.est_f16_bytes == 2 * 134_515_008 and smol.fits == {}
    assert "rough estimate" in smol.estimate_note
    assert not [r for r in hub.log if r.path.endswith("config.json")]

    assert _repos(search_models(SearchRequest(format="gguf"))) == [gguf_repo.repo]
    assert gguf_repo.repo not in _repos(search_models(SearchRequest(format="safetensors")))
    assert _repos(search_models(SearchRequest(author="HuggingFaceTB"))) == [smol.repo]
    assert _repos(search_models(SearchRequest(query="smollm2", sort="likes"))) == [
        smol.repo, gguf_repo.repo,
    ]  # fmt: skip
    assert _repos(search_models(SearchRequest(sort="updated")))[0] == gguf_repo.repo
    assert _repos(search_models(SearchRequest(sort="trending")))[0] == llama.repo
    assert _repos(search_models(SearchRequest(limit=1))) == [llama.repo]
    assert "sentence-transformers/all-MiniLM-L6-v2" in _repos(
        search_models(SearchRequest(task=None))
    )
    listing = [r for r in hub.log if r.path == "/api/models"]
    assert {"downloads", "likes", "trendingScore", "lastModified"} <= {
        q.query["sort"][0] for q in listing if "sort" in q.query
    }


def test_search_fit_for_a_memory_target(hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from lwq_app.core.hub.search import search_models

    events: list[Any] = []
    request = SearchRequest(target_memory=8 * GIB, context=4096)
    hits = {h.repo: h for h in search_models(request, progress=events.append).hits}
    smol = hits["HuggingFaceTB/SmolLM2-135M-Instruct"]
    # its config.json was fetched: the mixes' rules on its shapes, and the KV cache
    assert smol.kv_bytes == 90 << 20 and "config's shapes" in smol.estimate_note
    assert smol.est_sizes == estimate_sizes(None, Shapes.from_config(SMOLLM2_CONFIG), 4096).sizes
    assert all(smol.fits.values()) and set(smol.fits) == {"F16", *SEARCH_MIXES}
    # gated, no token: no config, so the rough estimate; weights alone decide the fit
    llama = hits["meta-llama/Llama-3.1-8B-Instruct"]
    assert llama.kv_bytes is None and llama.fits["Q4_K_M"] and not llama.fits["F16"]
    # with a token the gate lets in: the config's shapes and the KV cache count
    monkeypatch.setenv("HF_TOKEN", "hf_alice")
    llama = next(
        h for h in search_models(request).hits if h.repo == "meta-llama/Llama-3.1-8B-Instruct"
    )
    assert llama.kv_bytes == 512 << 20
    assert llama.fits == {
        "F16": False, "Q8_0": False, "Q6_K": True, "Q5_K_M": True, "Q4_K_M": True,
        "Q3_K_M": True, "Q2_K": True,
    }  # fmt: skip
    gguf_hit = hits["bartowski/SmolLM2-135M-Instruct-GGUF"]
    assert gguf_hit.kv_bytes is None and gguf_hit.fits["F16"]  # no config in a GGUF repo
    assert events[-1].phase.value == "search" and events[-1].done == events[-1].total


def test_repo_details_on_selection(hub: Any) -> None:
    from lwq_app.core.hub.access import hub_access
    from lwq_app.core.hub.search import repo_details

    d = repo_details("HuggingFaceTB/SmolLM2-135M-Instruct", headers=True)
    sizes = {f.name: f.size for f in d.files}
    assert sizes["model.safetensors"] == len(_safetensors_header(SMOLLM2_CONFIG))
    assert d.selection.kind == "safetensors"
    assert "model.safetensors" in d.selection.files
    assert "pytorch_model.bin" not in d.selection.files
    assert d.config is not None and d.config["hidden_size"] == 576
    assert d.parameters == 134_515_008 and d.license == "apache-2.0"
    assert d.card is not None and "# SmolLM2" in d.card
    assert d.estimate.kv_bytes == 90 << 20
    assert d.safetensors_shapes["model.embed_tokens.weight"] == (49152, 576)
    assert any(r.range and r.path.endswith("model.safetensors") for r in hub.log)
    g = repo_details("bartowski/SmolLM2-135M-Instruct-GGUF", access=hub_access())
    assert g.selection.kind == "gguf" and g.selection.files == ("SmolLM2-135M-Instruct-f16.gguf",)
    with pytest.raises(DownloadError, match="no such repo"):
        repo_details("nobody/nothing")


def test_cli_search(hub: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from lwq_app.cli.main import main

    assert main(["hub", "search", "smollm2", "--target-memory", "8GiB", "--context", "4096"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["REPO", "PARAMS", "ARCH"] and lines[0].split()[-1] == "FITS"
    smol = next(ln for ln in lines if ln.startswith("HuggingFaceTB/SmolLM2-135M-Instruct"))
    assert "134.5M" in smol and "apache-2.0" in smol and smol.split()[-1] == "F16"
    assert "estimates" in out and "KV cache: F16 at 4096 tokens" in out
    assert main(["hub", "search", "--gguf", "--sort", "likes", "--limit", "5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [h["repo"] for h in data["hits"]] == ["bartowski/SmolLM2-135M-Instruct-GGUF"]
    assert data["hits"][0]["est_sizes"]["Q4_K_M"] > 0
    assert main(["hub", "search", "--target-memory", "8 parsecs"]) == 1
    assert "--target-memory" in capsys.readouterr().err

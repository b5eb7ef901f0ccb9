"""The loopback Hub (tests/hub_server.py) driven by the real huggingface_hub client, so the other
Hub tests can trust that what it answers is what huggingface.co answers that client."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils import get_session

from hub_server import HubServer

GGUF = b"GGUF" + bytes(range(256)) * 64  # 16 KiB of "model"
CONFIG = json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}).encode()


def safetensors(shape: tuple[int, int]) -> bytes:
    header = json.dumps(
        {"w": {"dtype": "BF16", "shape": list(shape), "data_offsets": [0, 2 * shape[0] * shape[1]]}}
    )
    return struct.pack("<Q", len(header)) + header.encode() + bytes(2 * shape[0] * shape[1])


@pytest.fixture
def hub(hub_server: HubServer) -> HubServer:
    hub_server.add_token("hf_write", "alice")
    hub_server.add_token("hf_read", "bob", role="read")
    hub_server.add_model(
        "alice/tiny-gguf",
        {"tiny-F16.gguf": GGUF},
        meta={"downloads": 50, "likes": 1, "pipeline_tag": "text-generation", "license": "mit"},
    )
    hub_server.add_model(
        "org/tiny-st",
        {"model.safetensors": safetensors((8, 16)), "config.json": CONFIG},
        card="---\nlicense: apache-2.0\n---\n# tiny\n",
        meta={
            "downloads": 500,
            "likes": 9,
            "pipeline_tag": "text-generation",
            "library_name": "transformers",
        },
    )
    hub_server.add_model("org/other", {"notes.txt": b"hello"}, meta={"downloads": 5, "likes": 90})
    return hub_server


def test_the_fixture_points_this_process_and_its_children_at_the_server(hub: HubServer) -> None:
    import huggingface_hub.constants as hf_constants
    from huggingface_hub.utils._runtime import is_xet_available

    # constants are read at import, so the env var alone would not reach this process's client
    assert os.environ["HF_HUB_DISABLE_XET"] == "1" and hf_constants.HF_HUB_DISABLE_XET
    assert not is_xet_available()
    assert os.environ["HF_ENDPOINT"] == hub.url and hub.url.startswith("http://127.0.0.1:")


def test_search_filters_sorts_and_expands(hub: HubServer) -> None:
    api = HfApi(endpoint=hub.url, token=False)
    by_downloads = api.list_models(
        sort="downloads", expand=["downloads", "safetensors", "gated", "config"]
    )
    assert [m.id for m in by_downloads] == ["org/tiny-st", "alice/tiny-gguf", "org/other"]
    st = next(
        iter(api.list_models(filter="safetensors", expand=["safetensors", "config", "cardData"]))
    )
    assert st.id == "org/tiny-st" and st.safetensors is not None and st.safetensors.total == 8 * 16
    assert st.config == {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    assert st.card_data is not None and st.card_data.license == "apache-2.0"
    assert [m.id for m in api.list_models(filter="gguf")] == ["alice/tiny-gguf"]
    assert [m.id for m in api.list_models(search="TINY", author="org")] == ["org/tiny-st"]
    assert [m.id for m in api.list_models(sort="likes", limit=1)] == ["org/other"]
    tagged = {
        m.id for m in api.list_models(filter=["text-generation"], pipeline_tag="text-generation")
    }
    assert tagged == {"org/tiny-st", "alice/tiny-gguf"}
    assert "license:mit" in (next(iter(api.list_models(filter="gguf"))).tags or [])


def test_pages_are_followed_through_the_link_header() -> None:
    with HubServer(page_size=2) as hub:
        for i in range(5):
            hub.add_model(f"org/m{i}", {"a.txt": b"x"})
        assert len(list(HfApi(endpoint=hub.url, token=False).list_models())) == 5
        assert sum(q.path == "/api/models" for q in hub.log) == 3


def test_model_info_gives_sizes_and_lfs_sha256(hub: HubServer) -> None:
    info = HfApi(endpoint=hub.url, token=False).model_info("alice/tiny-gguf", files_metadata=True)
    (gguf,) = info.siblings or []
    assert gguf.rfilename == "tiny-F16.gguf" and gguf.size == len(GGUF)
    assert gguf.lfs is not None and gguf.lfs.sha256 == hashlib.sha256(GGUF).hexdigest()
    assert info.sha == hub.commits("alice/tiny-gguf")[-1] and len(info.sha) == 40
    assert info.gated is False and info.pipeline_tag == "text-generation"
    regular = HfApi(endpoint=hub.url).model_info("org/tiny-st", files_metadata=True)
    config = next(s for s in regular.siblings or [] if s.rfilename == "config.json")
    assert config.lfs is None and config.size == len(CONFIG)
    paths = HfApi(endpoint=hub.url).get_paths_info(
        "org/tiny-st", ["config.json", "model.safetensors"]
    )
    assert {p.path: getattr(p, "lfs", None) is not None for p in paths} == {
        "config.json": False,
        "model.safetensors": True,
    }


def test_download_gives_the_bytes_and_a_range_get_gives_the_tail(
    hub: HubServer, tmp_path: Path
) -> None:
    path = hf_hub_download(
        "alice/tiny-gguf", "tiny-F16.gguf", cache_dir=tmp_path / "c", endpoint=hub.url
    )
    assert Path(path).read_bytes() == GGUF
    (get,) = hub.downloads("alice/tiny-gguf", "tiny-F16.gguf")
    assert get.status == 200 and get.body_bytes_sent == len(GGUF) and get.range is None

    url = f"{hub.url}/alice/tiny-gguf/resolve/main/tiny-F16.gguf"
    response = get_session().get(url, headers={"Range": "bytes=1000-"})
    assert response.status_code == 206 and response.content == GGUF[1000:]
    assert response.headers["Content-Range"] == f"bytes 1000-{len(GGUF) - 1}/{len(GGUF)}"
    assert response.headers["ETag"] == f'"{hashlib.sha256(GGUF).hexdigest()}"'
    assert response.headers["X-Repo-Commit"] == hub.commits("alice/tiny-gguf")[-1]
    assert hub.downloads("alice/tiny-gguf", "tiny-F16.gguf")[-1].range == "bytes=1000-"
    assert get_session().get(url, headers={"Range": f"bytes={len(GGUF)}-"}).status_code == 416


def test_faults_cut_damage_and_redirect(hub: HubServer, tmp_path: Path) -> None:
    url = f"{hub.url}/alice/tiny-gguf/resolve/main/tiny-F16.gguf"
    hub.cut_after("alice/tiny-gguf", "tiny-F16.gguf", 1000)
    with pytest.raises(httpx2.RemoteProtocolError):
        get_session().get(url)
    assert hub.downloads("alice/tiny-gguf", "tiny-F16.gguf")[-1].body_bytes_sent == 1000
    hub.damage("alice/tiny-gguf", "tiny-F16.gguf")
    damaged = get_session().get(url)
    assert len(damaged.content) == len(GGUF) and damaged.content != GGUF
    assert damaged.headers["X-Linked-Etag"] == f'"{hashlib.sha256(GGUF).hexdigest()}"'

    hub.lfs_redirect = True
    redirect = get_session().get(url, follow_redirects=False)
    assert redirect.status_code == 302 and "/cdn/alice/tiny-gguf/" in redirect.headers["Location"]
    hub.clear_faults()
    path = hf_hub_download(
        "alice/tiny-gguf", "tiny-F16.gguf", cache_dir=tmp_path / "c", endpoint=hub.url
    )
    assert Path(path).read_bytes() == GGUF


def test_gated_missing_and_private_repos_raise_what_the_hub_raises(
    hub: HubServer, tmp_path: Path
) -> None:
    hub.add_model("meta/gated", {"model.gguf": GGUF}, gated=True)
    hub.gate("meta/gated", {"hf_write"})
    cache = tmp_path / "c"
    with pytest.raises(GatedRepoError):
        hf_hub_download("meta/gated", "model.gguf", cache_dir=cache, endpoint=hub.url, token=False)
    with pytest.raises(GatedRepoError):  # a token not granted access
        hf_hub_download(
            "meta/gated", "model.gguf", cache_dir=cache, endpoint=hub.url, token="hf_read"
        )
    assert Path(
        hf_hub_download(
            "meta/gated", "model.gguf", cache_dir=cache, endpoint=hub.url, token="hf_write"
        )
    )
    assert (
        HfApi(endpoint=hub.url, token=False).model_info("meta/gated").gated == "manual"
    )  # info stays public
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=False).model_info("nobody/nothing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/nothing", "x.gguf", cache_dir=cache, endpoint=hub.url, token=False)
    hub.add_model("alice/secret", {"a.txt": b"x"}, private=True)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token="hf_read").model_info("alice/secret")
    assert HfApi(endpoint=hub.url, token="hf_write").model_info("alice/secret").private


def test_whoami_with_a_good_and_a_bad_token(hub: HubServer) -> None:
    me = HfApi(endpoint=hub.url, token="hf_write").whoami()
    assert me["name"] == "alice" and me["auth"]["accessToken"]["role"] == "write"
    hub.add_token("hf_fine", "carol", fine_grained_scopes=["repo.content.read", "repo.write"])
    fine = HfApi(endpoint=hub.url).whoami(token="hf_fine")["auth"]["accessToken"]
    assert (
        fine["role"] == "fineGrained"
        and "repo.write" in fine["fineGrained"]["scoped"][0]["permissions"]
    )
    with pytest.raises(HfHubHTTPError, match="Invalid user token") as bad:
        HfApi(endpoint=hub.url, token="hf_nonsense").whoami()
    assert bad.value.response.status_code == 401


def test_create_repo_and_commit_an_lfs_file_and_a_card(hub: HubServer) -> None:
    api = HfApi(endpoint=hub.url, token="hf_write")
    url = api.create_repo("alice/quants", private=True)
    assert url.repo_id == "alice/quants" and api.create_repo("alice/quants", exist_ok=True)
    before = hub.commits("alice/quants")
    weights = os.urandom(1 << 20)
    card = "---\nbase_model: org/tiny-st\nbase_model_relation: quantized\n---\n# quants\n"
    info = api.create_commit(
        "alice/quants",
        [
            CommitOperationAdd("tiny-Q4_K_M.gguf", weights),
            CommitOperationAdd("README.md", card.encode()),
        ],
        commit_message="Add quants",
    )
    assert hub.commits("alice/quants") == [*before, info.oid]
    files = hub.repo_files("alice/quants")
    assert files["tiny-Q4_K_M.gguf"] == weights and files["README.md"] == card.encode()
    puts = [q for q in hub.log if q.method == "PUT"]
    assert len(puts) == 1 and puts[0].path.endswith(hashlib.sha256(weights).hexdigest())
    siblings = api.model_info("alice/quants", files_metadata=True).siblings or []
    assert {s.rfilename: s.lfs is not None for s in siblings} == {
        ".gitattributes": False,
        "README.md": False,
        "tiny-Q4_K_M.gguf": True,
    }
    with pytest.raises(HfHubHTTPError) as refused:  # a read token cannot write
        HfApi(endpoint=hub.url, token="hf_read").create_repo("bob/quants")
    assert refused.value.response.status_code == 403


def test_a_dataset_at_a_pinned_commit_and_its_tree(hub: HubServer, tmp_path: Path) -> None:
    pinned = "a" * 40
    assert hub.add_model("org/wiki", {"data/wiki.zip": GGUF}, repo_type="dataset", commit=pinned)
    path = hf_hub_download(
        "org/wiki", "data/wiki.zip", repo_type="dataset", revision=pinned, cache_dir=tmp_path / "c",
        endpoint=hub.url,
    )  # fmt: skip
    assert Path(path).read_bytes() == GGUF and f"snapshots/{pinned}/" in path
    api = HfApi(endpoint=hub.url)
    assert api.dataset_info("org/wiki").sha == pinned
    tree = api.list_repo_tree("org/wiki", repo_type="dataset", recursive=True)
    assert [e.path for e in tree] == ["data", "data/wiki.zip"]
    with pytest.raises(RepositoryNotFoundError):  # a dataset is not a model
        api.model_info("org/wiki")


def test_a_slow_file_streams_at_its_rate_and_a_resume_sends_only_the_rest(hub: HubServer) -> None:
    hub.slow("alice/tiny-gguf", "tiny-F16.gguf", bytes_per_s=80_000)  # 16 KiB: ~0.2 s
    url = f"{hub.url}/alice/tiny-gguf/resolve/main/tiny-F16.gguf"
    hub.cut_after("alice/tiny-gguf", "tiny-F16.gguf", 5000)
    have = b""
    with pytest.raises(httpx2.RemoteProtocolError), get_session().stream("GET", url) as response:
        for chunk in response.iter_bytes():
            have += chunk
    started = time.monotonic()
    rest = get_session().get(url, headers={"Range": f"bytes={len(have)}-"})
    assert time.monotonic() - started > 0.1 and have + rest.content == GGUF
    first, second = hub.downloads("alice/tiny-gguf", "tiny-F16.gguf")
    assert (first.body_bytes_sent, second.range) == (5000, "bytes=5000-")
    assert second.body_bytes_sent == len(GGUF) - 5000 and second.ended >= second.started

"""llama.cpp's CPU extra buffer types (AMX, repacked layouts) are off where they crash.

On an AMX CPU every decode of a Q4_0, Q8_0 or Q4_K tensor of SmolLM2 died with SIGSEGV in
``ggml_backend_amx_mul_mat`` (llama.cpp #20824); the eval tests on quantized models are the
end-to-end check. Here: the switch itself and its override.
"""

from __future__ import annotations

import llama_cpp
import pytest

from lwq_app.core.engine import cpu_extra_buffers_safe
from lwq_app.core.engine.common import model_params, safe_default_model_params


def test_off_exactly_on_amx_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LWQ_CPU_EXTRA_BUFFERS", raising=False)
    llama_cpp.llama_backend_init()
    amx = "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode()
    assert cpu_extra_buffers_safe() is not amx
    assert bool(model_params(3).use_extra_bufts) is not amx
    assert model_params(3).n_gpu_layers == 3


@pytest.mark.parametrize("value", ["0", "1"])
def test_the_environment_forces_it(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LWQ_CPU_EXTRA_BUFFERS", value)
    assert cpu_extra_buffers_safe() is (value == "1")
    assert bool(model_params().use_extra_bufts) is (value == "1")
    import llama_cpp.llama_cpp as low

    original = low.llama_model_default_params
    with safe_default_model_params():  # what llama_cpp.Llama gets while a completion loads
        assert bool(low.llama_model_default_params().use_extra_bufts) is (value == "1")
    assert low.llama_model_default_params is original

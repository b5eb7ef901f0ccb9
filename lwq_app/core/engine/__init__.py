"""The engine layer: the only code that talks to llama.cpp (llama-cpp-python's ctypes API).

It owns every native handle and speaks ctypes; everything above it speaks in domain terms.
Functions here run *in the calling process*: long jobs call them inside a child process
(``jobs.child_runner.run_in_child``) so that cancel can kill the process and a native crash
never takes the caller down. Importing the package loads no native code; the libraries load
on first use. Submodules: ``prototypes`` (every native library, struct layout and ctypes
prototype), ``common`` (backend init, log capture, ggml type traits, backend list), ``quant``
(llama_model_quantize), ``completion`` (greedy completion), ``context`` (``LlamaSession``:
model + context, batched decode, logits, ``cb_eval``, threadpool), ``graph`` (imatrix
collection and hidden-state capture through ``cb_eval``), ``kernels`` (ggml_quantize_chunk /
to_float).
"""

from __future__ import annotations

from .common import captured_log, cpu_extra_buffers_safe, ggml_type_traits, llama_cpp_version
from .completion import greedy_completion
from .context import EvalCallback, LlamaSession, SessionInfo
from .graph import CollectResult, collect_activations
from .kernels import quantize_dequantize, quantize_rows
from .quant import NativeQuantizeResult, quantize_file

__all__ = [
    "CollectResult",
    "EvalCallback",
    "LlamaSession",
    "NativeQuantizeResult",
    "SessionInfo",
    "captured_log",
    "collect_activations",
    "cpu_extra_buffers_safe",
    "ggml_type_traits",
    "greedy_completion",
    "llama_cpp_version",
    "quantize_dequantize",
    "quantize_file",
    "quantize_rows",
]

"""Every native library, struct layout and ctypes prototype the engine uses, in one place.

llama-cpp-python's bindings (``llama_cpp.llama_*``) come with their own prototypes; what they
do not expose — ggml's quantize kernels and type traits, the tensor and backend calls of the
imatrix callback, the CPU threadpool — is declared here, against the pinned llama.cpp build.

The libraries are found the way llama_cpp finds its own: ``load_shared_library`` over its
``lib`` folder, which knows each platform's names (``libggml-base.so``, ``.dylib``,
``ggml-base.dll``). Each function is looked up in the library that defines it (Windows'
``GetProcAddress`` does not search a DLL's dependencies, as ``dlsym`` does), on first use.

``GGML.<name>`` is the prototyped function ``name``; nothing loads before the first call.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

# --- struct layouts of the pinned ggml (ggml/include/ggml.h, ggml-cpu.h) -----------------

GGML_MAX_DIMS = 4
GGML_MAX_SRC = 10
GGML_MAX_N_THREADS = 512
GGML_TYPE_F32 = 0


class GgmlTensor(ctypes.Structure):
    """``struct ggml_tensor``."""


GgmlTensor._fields_ = [
    ("type", ctypes.c_int),
    ("buffer", ctypes.c_void_p),
    ("ne", ctypes.c_int64 * GGML_MAX_DIMS),
    ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
    ("op", ctypes.c_int),
    ("op_params", ctypes.c_int32 * 16),
    ("flags", ctypes.c_int32),
    ("src", ctypes.POINTER(GgmlTensor) * GGML_MAX_SRC),
    ("view_src", ctypes.POINTER(GgmlTensor)),
    ("view_offs", ctypes.c_size_t),
    ("data", ctypes.c_void_p),
    ("name", ctypes.c_char * 64),
    ("extra", ctypes.c_void_p),
    ("padding", ctypes.c_char * 8),
]


class TypeTraits(ctypes.Structure):
    """``struct ggml_type_traits``."""

    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


class ThreadpoolParams(ctypes.Structure):
    """``struct ggml_threadpool_params``."""

    _fields_ = [
        ("cpumask", ctypes.c_bool * GGML_MAX_N_THREADS),
        ("n_threads", ctypes.c_int),
        ("prio", ctypes.c_int),
        ("poll", ctypes.c_uint32),
        ("strict_cpu", ctypes.c_bool),
        ("paused", ctypes.c_bool),
    ]


#: ``ggml_to_float_t``: ``void (*)(const void * x, float * y, int64_t k)``
TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64)

# --- function prototypes: name -> (library, restype, argtypes) ----------------------------

_vp, _sz, _i64, _int = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64, ctypes.c_int

PROTOTYPES: dict[str, tuple[str, Any, list[Any]]] = {
    # type traits and the quantize kernels (ggml-base)
    "ggml_blck_size": ("ggml-base", _i64, [_int]),
    "ggml_type_size": ("ggml-base", _sz, [_int]),
    "ggml_type_name": ("ggml-base", ctypes.c_char_p, [_int]),
    "ggml_row_size": ("ggml-base", _sz, [_int, _i64]),
    "ggml_get_type_traits": ("ggml-base", ctypes.POINTER(TypeTraits), [_int]),
    "ggml_quantize_requires_imatrix": ("ggml-base", ctypes.c_bool, [_int]),
    "ggml_quantize_chunk": ("ggml-base", _sz, [_int, _vp, _vp, _i64, _i64, _i64, _vp]),
    # tensors seen by the graph-eval callback (ggml-base)
    "ggml_op_name": ("ggml-base", ctypes.c_char_p, [_int]),
    "ggml_nbytes": ("ggml-base", _sz, [_vp]),
    "ggml_backend_buffer_is_host": ("ggml-base", ctypes.c_bool, [_vp]),
    "ggml_backend_tensor_get": ("ggml-base", None, [_vp, _vp, _sz, _sz]),
    # backends and devices (the registry is in ggml, the accessors in ggml-base)
    "ggml_backend_reg_count": ("ggml", _sz, []),
    "ggml_backend_reg_get": ("ggml", _vp, [_sz]),
    "ggml_backend_reg_name": ("ggml-base", ctypes.c_char_p, [_vp]),
    "ggml_backend_dev_count": ("ggml", _sz, []),
    "ggml_backend_dev_get": ("ggml", _vp, [_sz]),
    "ggml_backend_dev_type": ("ggml-base", _int, [_vp]),
    "ggml_backend_dev_description": ("ggml-base", ctypes.c_char_p, [_vp]),
    "ggml_backend_dev_name": ("ggml-base", ctypes.c_char_p, [_vp]),
    "ggml_backend_dev_memory": ("ggml-base", None, [_vp, ctypes.POINTER(_sz), ctypes.POINTER(_sz)]),
    "ggml_backend_dev_backend_reg": ("ggml-base", _vp, [_vp]),
    # the persistent CPU threadpool llama-bench runs on
    "ggml_threadpool_params_init": ("ggml-base", None, [ctypes.POINTER(ThreadpoolParams), _int]),
    "ggml_threadpool_new": ("ggml-cpu", _vp, [ctypes.POINTER(ThreadpoolParams)]),
    "ggml_threadpool_free": ("ggml-cpu", None, [_vp]),
    "llama_attach_threadpool": ("llama", None, [_vp, _vp, _vp]),
    "llama_detach_threadpool": ("llama", None, [_vp]),
}


def lib_dir() -> Path:
    """llama-cpp-python's folder of native libraries."""
    from llama_cpp import _ggml

    return Path(_ggml.libggml_base_path)


_libraries: dict[str, Any] = {}


def library(base_name: str) -> Any:
    """The loaded library ``base_name`` ("ggml-base", "ggml", "ggml-cpu", "llama"), through
    llama_cpp's own loader (its platform's file names, its DLL search path on Windows)."""
    lib = _libraries.get(base_name)
    if lib is None:
        if base_name == "llama":
            from llama_cpp.llama_cpp import _lib

            lib = _lib
        elif base_name == "ggml":
            from llama_cpp._ggml import libggml

            lib = libggml
        else:
            from llama_cpp._ctypes_extensions import load_shared_library

            lib = load_shared_library(base_name, lib_dir())
        _libraries[base_name] = lib
    return lib


class _Functions:
    """``GGML.name``: the function ``name`` of ``PROTOTYPES``, bound and prototyped on first
    access (then a plain attribute)."""

    def __getattr__(self, name: str) -> Any:
        try:
            lib_name, restype, argtypes = PROTOTYPES[name]
        except KeyError:
            raise AttributeError(f"no prototype for {name!r} in engine/prototypes.py") from None
        fn = getattr(library(lib_name), name)
        fn.restype = restype
        fn.argtypes = argtypes
        setattr(self, name, fn)
        return fn


GGML: Any = _Functions()

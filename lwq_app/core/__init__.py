"""Qt-free core of lwq: one package per pipeline stage, each job a typed function.

Everything a headless CLI, a test or the GUI drives lives here. The stages and their order
are in ``pyproject.toml`` (import-linter contracts, checked by ``make test``). The core never
imports PySide6, pyqtgraph, the CLI or the GUI, and importing any of its packages loads none
of llama_cpp, torch or huggingface_hub (``tests/core/test_no_qt.py``): those load when a job
runs.
"""

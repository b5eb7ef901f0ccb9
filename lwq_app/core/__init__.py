"""Qt-free engine of lwq.

Everything a headless CLI or a test can drive lives here. This package must never import
PySide6 or pyqtgraph (``tests/core/test_no_qt.py`` proves it).
"""

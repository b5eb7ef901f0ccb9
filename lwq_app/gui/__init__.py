"""The desktop app: PySide6 + pyqtgraph views over the core's jobs, and the one worker bridge.

Importing this package loads no Qt: ``launch`` (the command-line options and the display
check) is read by the CLI and ``make run`` before anything decides to open a window.
``app.main`` is the entry point that builds the window.
"""

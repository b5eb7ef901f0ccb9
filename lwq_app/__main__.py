"""``python -m lwq_app``: the desktop app (``lwq gui`` is the same from the CLI)."""

import sys

from lwq_app.gui.app import main

if __name__ == "__main__":
    sys.exit(main())

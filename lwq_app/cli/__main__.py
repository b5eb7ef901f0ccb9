"""``python -m lwq_app.cli``."""

import sys

from .main import main

sys.exit(main())

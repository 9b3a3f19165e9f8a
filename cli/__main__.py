"""``python -m cli`` is ``rcd``."""

import sys

from .main import main

sys.exit(main())

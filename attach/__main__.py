"""``python -m attach SESSION_ID [--relay URL] [--token-file PATH] ...`` is ``rcd attach``."""

import sys

from .command import main

sys.exit(main())

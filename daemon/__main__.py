"""``python -m daemon`` is ``rcd`` (services and tests start the daemon as
``python -m daemon start``): the one place where ``daemon/`` reaches up to the command line."""

import sys

from cli import main

sys.exit(main())

"""`python -m dsi_online` is the `dsi-online` command."""

import sys

from dsi_online.cli import main

sys.exit(main())

"""`python -m dsi_online` is the `dsi-online` command."""

import sys

from dsi_online.cli import main

code = main()
# Once a KeyboardInterrupt has escaped code run by a string `exec` (Ctrl-C while an import
# builds a dataclass, say), CPython ends `python -m` by SIGINT whatever its exit code, even
# though `main` caught the interrupt; a string `exec` that raises nothing clears that mark.
exec("")
sys.exit(code)

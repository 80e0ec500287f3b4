"""`python -m dsi_online` is the `dsi-online` command."""

import sys

from dsi_online.cli import main

code = main()
# Only `python -m` needs this. Once a KeyboardInterrupt has escaped code run by a string
# `exec` (Ctrl-C while an import builds a dataclass, say), CPython's `run_eval_code_obj`
# marks it unhandled, even though `main` caught it, and `Py_RunMain` then ends the process
# by SIGINT whatever its exit code (a script exits earlier, through `Py_Exit`). A string
# `exec` that raises nothing clears the mark; there is no public call that does.
exec("")
sys.exit(code)

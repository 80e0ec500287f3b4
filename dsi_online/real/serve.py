"""A worker process's entry point: `python -m dsi_online.real.serve SOCKET_FD FLAG_FD`.

A module of its own, so that the worker's types keep their module name when pickled (a
module run with `-m` is `__main__`)."""

import sys

from dsi_online.real.worker import main

if __name__ == "__main__":
    main(sys.argv[1:])

"""The `dsi-online` command line: every command module registers on one typer app.

`main` is the one place that turns failures into the conventions every command follows
(commands added later, such as `pair train` or `validate`, get them by registering on
`dsi_online.cli.app.app` and being imported in `dsi_online.cli.commands`):

- bad input, a file that cannot be read or written, a backend that cannot be reached:
  one line `error: ...` on stderr naming the option and what it allows, exit code 2;
- Ctrl-C: see `dsi_online.interrupts` (exit code 130, no traceback, also during imports,
  which is why this module imports nothing heavy before the handler is installed);
- no arguments: the help, exit code 0.

The helpers commands share (option types and panels, output-path checks, progress bars,
consoles that never cut numbers) are in `dsi_online.cli.common`.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

from dsi_online import interrupts

__all__ = ["app", "main"]

EXIT_BAD_INPUT = 2


def _error(message: str) -> int:
    """Print the one line of a failure and return its exit code."""
    text = " ".join(message.split())  # one line, whatever the message held
    sys.stderr.write(f"error: {text}\n")
    sys.stderr.flush()
    return EXIT_BAD_INPUT


def _silence_stdout() -> None:
    """stdout failed (full disk, closed pipe): send what is still buffered to /dev/null, so
    that the interpreter's last flush does not print a second error at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _os_error(exc: OSError) -> int:
    """A file or stream failed where no option names it (commands check the paths they are
    given before working): most often stdout, full or closed."""
    if exc.filename is not None:
        return _error(f"cannot use {exc.filename}: {exc.strerror or exc}")
    _silence_stdout()
    if exc.errno == errno.EPIPE:
        return _error("cannot write to stdout: the reader closed the pipe")
    return _error(f"cannot write to stdout: {exc.strerror or exc}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (0 success, 1 a failed gate such as bench's,
    2 bad input or an unusable file or backend, 130 interrupted); never a traceback for
    anything but a bug."""
    with interrupts.handling(restore=argv is not None):  # None: the command line itself
        try:
            code = _main(sys.argv[1:] if argv is None else list(argv))
            sys.stdout.flush()
            return code
        except KeyboardInterrupt:
            if not interrupts.announced():
                sys.stderr.write("interrupted\n")
            return interrupts.EXIT_INTERRUPTED
        except OSError as exc:
            return _os_error(exc)


def _main(argv: list[str]) -> int:
    import typer
    from typer.exceptions import TyperException  # click's exceptions derive from it

    from dsi_online.cli.commands import command
    from dsi_online.errors import DSIOnlineError

    try:
        result = command().main(args=argv, prog_name="dsi-online", standalone_mode=False)
    except DSIOnlineError as exc:
        return _error(exc.cli_message)
    except MemoryError:
        return _error("out of memory: choose fewer tokens, repeats, servers or cells")
    except TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # typer keeps click's classes private
            return 0  # the help is already printed
        return _error(_click_message(exc))
    except typer.Abort:
        return _error("aborted")
    except SystemExit as exc:  # typer's answer to a closed stdout pipe
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    return result if isinstance(result, int) else 0


def _click_message(exc: Any) -> str:
    """A click usage error as one line, without pydantic's 'Value error, ' preamble."""
    message: str = exc.format_message().replace("Value error, ", "")
    context = getattr(exc, "ctx", None)
    if context is not None:
        message += f" (see {context.command_path} --help)"
    return message


def __getattr__(name: str) -> Any:
    """`app`, the typer application with every command registered, imported on first use."""
    if name == "app":
        from dsi_online.cli.commands import app

        return app
    raise AttributeError(f"module 'dsi_online.cli' has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())

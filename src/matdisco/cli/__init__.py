"""The ``matdisco`` command line: a thin Typer layer over the Python API."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import typer

from matdisco import MatdiscoError, __version__

app = typer.Typer(
    help="matdisco: deep-learning methods of materials discovery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(exc: Exception) -> None:
    """Print ``error: ...`` on stderr and exit with code 2 (bad input)."""
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=2)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :class:`MatdiscoError` into a one-line message and exit code 2, and Ctrl-C
    (:class:`KeyboardInterrupt`) into a one-line ``interrupted`` message and exit code 130
    (the shell's code for SIGINT) instead of a traceback.

    Commands that can continue an interrupted job say how in their own handler; this one
    only promises that nothing half-written was published (every writer stages its
    output and renames it into place).
    """

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MatdiscoError as exc:
            fail(exc)
        except KeyboardInterrupt as exc:
            what = fn.__name__.rstrip("_").replace("_cmd", "")
            typer.echo(f"interrupted: {what} stopped before it finished; "
                       + (str(exc) if str(exc) else "outputs that were complete are kept, "
                          "nothing half-written was published"), err=True)
            raise typer.Exit(code=130) from None

    return wrapper


def one_input(positional: Any, option: Any, what: str) -> Any:
    """The input file of a command that takes it positionally or as ``--data`` (the name
    ``matdisco train`` uses): exactly one of the two must be given."""
    if positional is not None and option is not None and positional != option:
        raise MatdiscoError(f"give the {what} once: as an argument ({positional}) or as "
                            f"--data ({option}), not both")
    got = positional if positional is not None else option
    if got is None:
        raise MatdiscoError(f"missing the {what}: give it as an argument or as --data")
    return got


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True,
                                       callback=_print_version,
                                       help="Print the version and exit.")) -> None:
    """matdisco: deep-learning methods of materials discovery."""


from matdisco.cli import property as _property  # noqa: E402

_property.register(app)

# domain sub-commands (each module defines ``app``); missing optional domains are skipped
for _name, _module in (("data", "matdisco.cli.data"), ("screen", "matdisco.cli.screen"),
                       ("inverse", "matdisco.cli.inverse"), ("ebsd", "matdisco.cli.ebsd"),
                       ("xrd", "matdisco.cli.xrd"), ("refine", "matdisco.cli.refine")):
    try:
        _mod = importlib.import_module(_module)
    except ModuleNotFoundError as _exc:  # pragma: no cover - optional domain not present
        if _exc.name is not None and _exc.name.startswith("matdisco.cli"):
            continue
        raise
    app.add_typer(_mod.app, name=_name)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="matdisco")


if __name__ == "__main__":  # pragma: no cover
    main()
    sys.exit()

"""How every command line of the project ends: one line naming what is wrong, never a traceback
from deep inside, unless asked for one.

``run_tool(main)`` runs ``main(argv)`` (``argv``: the command line without ``--debug``) and turns
what it raises into its exit status:

* an exception: ``<prog>: error: <message>`` on one line, exit status 2 (the message names the
  file, option or value; a ``KeyError``'s own text, not its quotes);
* Ctrl-C (``KeyboardInterrupt``): ``<prog>: interrupted``, exit status 130 (what the tool keeps of
  an interrupted run is its own business: ``tools/demo.py --webcam`` keeps what it segmented);
* ``SystemExit`` (argparse's errors, ``parser.exit``): as raised.

``--debug`` anywhere on the command line, or ``AAMN_DEBUG=1`` in the environment, lets the
exception through with its traceback.  ``--config-max-bytes N`` and ``--config-max-nodes N``, taken
by every tool the same way, set the limits on the configs it reads (``aamn.config``: a file's size,
and its YAML values with the aliases expanded; ``$AAMN_CONFIG_MAX_BYTES`` /
``$AAMN_CONFIG_MAX_NODES``, which the processes it starts inherit).
"""

import argparse
import os
import sys
from typing import Callable, List, Optional, Sequence

__all__ = [
    "DEBUG_ENV",
    "LIMIT_FLAGS",
    "add_detector_arguments",
    "debug_requested",
    "error_message",
    "model_tool_parser",
    "run_tool",
]

DEBUG_ENV = "AAMN_DEBUG"


# The flags every tool takes for the limits on the configs it reads -> their environment variable.
LIMIT_FLAGS = {
    "--config-max-bytes": "AAMN_CONFIG_MAX_BYTES",
    "--config-max-nodes": "AAMN_CONFIG_MAX_NODES",
}


def take_limit_flags(argv: List[str]) -> List[str]:
    """``argv`` without the ``LIMIT_FLAGS`` (``--flag N`` or ``--flag=N``), whose values are set
    in the environment.  Raises ``ValueError`` naming a flag without a whole number."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        name, _, value = arg.partition("=")
        if name in LIMIT_FLAGS:
            if not value:
                value = argv[i + 1] if i + 1 < len(argv) else ""
                i += 1
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"{name} needs a whole number of at least 1, got {value!r}")
            os.environ[LIMIT_FLAGS[name]] = value
        else:
            out.append(arg)
        i += 1
    return out


def debug_requested(argv: Sequence[str] = ()) -> bool:
    """Whether a traceback was asked for: ``--debug`` in ``argv`` or ``$AAMN_DEBUG`` set to
    anything but ``""`` / ``0``."""
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def error_message(err: BaseException) -> str:
    """The one line that tells the user what is wrong: the exception's message on one line
    (a ``KeyError``'s text without the quotes ``str`` adds), or its type when it has none."""
    if isinstance(err, KeyError) and err.args:
        text = str(err.args[0])
    else:
        text = str(err)
    text = " ".join(text.split())
    return text or type(err).__name__


def run_tool(main: Callable, argv: Optional[List[str]] = None, prog: str = "") -> int:
    """``main(argv)``'s exit status, with the errors of the module docstring ended on one line.

    Args:
        main: the tool's ``main(argv=None)``; returns an exit status (``None``: 0).
        argv: the command line (default ``sys.argv[1:]``); ``--debug`` and the ``LIMIT_FLAGS``
            are taken out of it.
        prog: the tool's name in the messages (default the script's file name).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    prog = prog or os.path.basename(sys.argv[0] or "aamn")
    try:
        status = main(take_limit_flags(argv))
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\n{prog}: interrupted", file=sys.stderr, flush=True)
        return 130
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - every error ends in one line unless debugging
        if debug:
            raise
        print(
            f"{prog}: error: {error_message(e)}  (--debug or {DEBUG_ENV}=1 shows the traceback)",
            file=sys.stderr,
            flush=True,
        )
        return 2
    return 0 if status is None else int(status)


def model_tool_parser(description: str) -> argparse.ArgumentParser:
    """The parser of a tool that runs a trained model: its docstring as the description and the
    required ``--config-file``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, help="the model's config")
    return parser


def add_detector_arguments(parser: argparse.ArgumentParser) -> None:
    """``--detector-config`` / ``--detector-weights``: the proposal detector of AAMN, overriding
    the one its checkpoint records."""
    parser.add_argument(
        "--detector-config", default="", help="the proposal detector's config (AAMN's recorded one)"
    )
    parser.add_argument(
        "--detector-weights", default="", help="the proposal detector's weights (the recorded)"
    )

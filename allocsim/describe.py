"""``allocsim describe [KEY.PATH]``: every key of an experiment file, from the schema catalog.

Prints each key's path, type (with its unit), default and one line of help, for the
whole file or the part under ``KEY.PATH`` (``machine.nodes``, ``workloads.synthetic``,
``workloads[0].rate``). ``--json-schema`` prints the JSON Schema editors use for
completion and checking. Both come from :func:`workloads.registry.experiment_schema`,
as the README's reference section does (:mod:`allocsim.config_reference`).
"""

from __future__ import annotations

import argparse
import json
import textwrap
from typing import Any

from simcore.config.override import scalar_text
from simcore.config.schema import Derived, Key, json_schema, select
from simcore.errors import ConfigError

EPILOG = """examples:
  allocsim describe                      every key
  allocsim describe machine.nodes        a node's keys
  allocsim describe workloads.synthetic  the keys of one workload kind
  allocsim describe workloads.rate       rate, for every kind that has it
  allocsim describe --json-schema > allocsim.schema.json
"""
WIDTH = 88


def add_parser(sub: Any) -> None:
    """Register ``describe`` on the ``allocsim`` subcommands."""
    d = sub.add_parser("describe", help="print the keys of an experiment file: type, default, "
                       "unit and help", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Print every key of an experiment file, or those under "
                                   "KEY.PATH, with its type, unit, default and help.")
    d.add_argument("path", nargs="?", default="", metavar="KEY.PATH",
                   help="a key path: machine.nodes, sysctl.min_free_kbytes, "
                        "workloads.synthetic, workloads[0].rate (default: every key)")
    d.add_argument("--json-schema", action="store_true",
                   help="print the JSON Schema of an experiment file instead (for editors)")


def default_text(key: Key) -> str:
    """A key's default as a user would write it, or ``required``."""
    if key.required:
        return "required"
    if isinstance(key.default, Derived):
        return key.default.text
    if isinstance(key.default, list | dict):
        return json.dumps(key.default)
    return scalar_text(key.default)


def type_text(key: Key) -> str:
    """A key's type, with its unit in brackets."""
    return key.type.text + (f" [{key.type.unit}]" if key.type.unit else "")


def describe_text(root: Key, query: str = "") -> str:
    """The ``describe`` listing of the keys under ``query``.

    Raises:
        ConfigError: No key has that path (the nearest valid one is suggested).
    """
    try:
        found = select(root, query)
    except LookupError as exc:
        raise ConfigError("allocsim describe", query, "a key path of an experiment file "
                          "(allocsim describe lists them all)", query,
                          problem=f"no such key; did you mean {exc.args[0]!r}?") from None
    out = []
    for path, key in found:
        default = default_text(key)
        head = f"{path}: {type_text(key)}" + (
            "" if default == "-" else "; required" if default == "required"
            else f"; default: {default}")
        out.append(head)
        out.extend(textwrap.wrap(key.help, WIDTH, initial_indent="    ",
                                 subsequent_indent="    "))
    return "\n".join(out) + "\n"


def cmd_describe(args: argparse.Namespace) -> int:
    """Print the listing (or the JSON Schema); a bad path is one error line, exit 2."""
    from workloads.registry import experiment_schema

    root = experiment_schema()
    if args.json_schema:
        print(json.dumps(json_schema(root), indent=2, ensure_ascii=False))
        return 0
    print(describe_text(root, args.path), end="")
    return 0

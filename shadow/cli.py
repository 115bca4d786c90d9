"""`shadow` command line: one subcommand per module, each with configure(parser) and
run(args) -> exit code. Modules are imported only when their command runs, so
`shadow rules check` never pays for the proxy's imports."""
from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> (module, one-line help). Each module defines
#: `configure(parser: argparse.ArgumentParser) -> None` and `run(args) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "proxy": ("shadow.serve", "run the sidecar proxy in front of the upstream API"),
    "rules": ("shadow.ruletools.cli", "check, test and describe rule files"),
    "compare": ("shadow.ruletools.compare", "compare one key by hand: API document vs shadow source"),
    "gate": ("shadow.gate.cli", "cutover gate: GO / NO-GO from Prometheus"),
    "verify": ("shadow.verify.cli", "verify every key: counts, sums and sets, full reconciliation"),
    "console": ("shadow.console.cli", "the cutover console: every pod's evidence in one web page"),
    "demo": ("shadow.demo.run", "the whole thing on one machine with embedded servers"),
    "seed": ("shadow.demo.marketplace.cli", "load the marketplace reference domain into Mongo and PostgreSQL"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only`, the options of that one subcommand (the
    others keep their one-line help, their modules unimported: `shadow proxy` must not
    carry the demo's or verify's drivers in its resident memory)."""
    parser = argparse.ArgumentParser(prog="shadow",
                                     description="Shadow-read verification sidecar for MongoDB -> PostgreSQL "
                                                 "migrations.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(_module=module_name)
        if only is not None and name != only:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as missing:
            if missing.name is None or not module_name.startswith(missing.name):
                raise
            command.set_defaults(_missing=True)
            continue
        module.configure(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    chosen = words[0] if words and words[0] in COMMANDS else None
    args = build_parser(chosen).parse_args(words)
    if getattr(args, "_missing", False):
        print(f"shadow {args.command}: not available in this build ({args._module} missing)", file=sys.stderr)
        return 2
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

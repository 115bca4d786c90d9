"""`shadow proxy`: parse the configuration, run the sidecar until SIGTERM/SIGINT, then
drain in-flight requests and exit. Exit codes: 0 after a clean stop, 2 for a bad flag,
env var or rule file at start (the message names it)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from shadow.config import Config, ConfigError, add_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        config = Config.parse(args)
    except ConfigError as problem:
        print(f"shadow proxy: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(_main(config))
    return uvloop.run(_main(config))


async def _main(config: Config) -> int:
    from prometheus_client import CollectorRegistry

    from shadow.sidecar import RulesNotLoaded, start_sidecar

    registry = CollectorRegistry(auto_describe=True)
    gate = None
    if config.gate_criteria is not None:  # checked before listening: a bad file fails the start
        from shadow.gate import CriteriaError, load_criteria
        from shadow.gate.local import gate_hook

        try:
            gate = gate_hook(registry, load_criteria(config.gate_criteria))
        except CriteriaError as problem:
            print(f"shadow proxy: {problem}", file=sys.stderr)
            return 2
    try:
        sidecar = await start_sidecar(config, registry=registry, gate=gate, install_signal_handlers=True,
                                      warm_in_background=True)
    except RulesNotLoaded as problem:
        print(f"shadow proxy: {config.rules}: {problem}", file=sys.stderr)
        return 2
    except OSError as problem:  # e.g. address already in use
        print(f"shadow proxy: cannot listen: {problem}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"shadow proxy: listening on {sidecar.proxy_url}, admin on {sidecar.admin_url}", file=sys.stderr, flush=True)
    await stop.wait()
    logging.getLogger("shadow").info("stopping: draining in-flight requests (up to %ss)", config.drain_timeout)
    await sidecar.stop()
    return 0

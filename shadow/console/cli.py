"""`shadow console --evidence DSN [--prometheus URL] [--listen HOST:PORT]`: serve the
console until interrupted. `start_console()` runs it in the current loop (tests, demo).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from shadow.config import check_token
from shadow.console.app import Console
from shadow.console.queries import DEFAULT_CLEAN_WINDOW
from shadow.publish import evidence_store
from shadow.publish.admin_auth import AdminAuth, is_loopback

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger("shadow.console")
DEFAULT_LISTEN = "127.0.0.1:9191"


def configure(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--evidence", metavar="DSN", default=env("SHADOW_EVIDENCE"),
                        help="PostgreSQL DSN of the evidence store (env SHADOW_EVIDENCE; required)")
    parser.add_argument("--prometheus", metavar="URL", default=env("SHADOW_PROMETHEUS"),
                        help="Prometheus base URL for known divergences (env SHADOW_PROMETHEUS; optional)")
    parser.add_argument("--listen", metavar="HOST:PORT", default=env("SHADOW_CONSOLE_LISTEN", DEFAULT_LISTEN),
                        help=f"address to serve on (env SHADOW_CONSOLE_LISTEN; default {DEFAULT_LISTEN})")
    parser.add_argument("--token-file", metavar="FILE", default=env("SHADOW_CONSOLE_TOKEN_FILE"),
                        help="file holding the console token (env SHADOW_CONSOLE_TOKEN_FILE, or the token itself "
                             "in SHADOW_CONSOLE_TOKEN); required when listening beyond loopback")
    parser.add_argument("--trace-url", metavar="URL", default=env("SHADOW_TRACE_URL"),
                        help="link for trace ids, with {trace_id}, e.g. https://jaeger/trace/{trace_id} "
                             "(env SHADOW_TRACE_URL)")
    parser.add_argument("--window", metavar="DAYS", type=float, default=DEFAULT_CLEAN_WINDOW / 86400,
                        help="the clean window the gate asks for, shown per entity (default 7)")


@dataclass
class RunningConsole:
    url: str
    runner: web.AppRunner
    pool: asyncpg.Pool

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.pool.close()


async def start_console(evidence: str, listen: str = DEFAULT_LISTEN, token: str | None = None,
                        prometheus: str | None = None, trace_url: str | None = None,
                        clean_window: float = DEFAULT_CLEAN_WINDOW) -> RunningConsole:
    """Create (or migrate) the store's schema, then serve the console."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    auth = AdminAuth(token, exposed=not is_loopback(host))
    pool = await evidence_store.create_pool(evidence)
    console = Console(pool, auth, prometheus, trace_url, clean_window)
    runner = web.AppRunner(console.app(), access_log=None)
    try:
        await runner.setup()
        await web.TCPSite(runner, host, int(port), reuse_address=True).start()
    except BaseException:
        await runner.cleanup()
        await pool.close()
        raise
    bound = runner.addresses[0][1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else (f"[{host}]" if ":" in host else host)
    return RunningConsole(f"http://{shown}:{bound}", runner, pool)


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        text: str | None = Path(args.token_file).read_text("utf-8").strip()
    else:
        text = os.environ.get("SHADOW_CONSOLE_TOKEN")
    return check_token(text) if text else None


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.evidence:
        print("shadow console: --evidence DSN is required (or SHADOW_EVIDENCE)", file=sys.stderr)
        return 2
    try:
        token = _token(args)
    except (OSError, ValueError) as problem:
        print(f"shadow console: token: {problem}", file=sys.stderr)
        return 2

    async def serve() -> None:
        console = await start_console(args.evidence, args.listen, token, args.prometheus, args.trace_url,
                                      args.window * 86400)
        print(f"shadow console on {console.url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(number, stop.set)
        try:
            await stop.wait()
        finally:
            await console.stop()

    try:
        asyncio.run(serve())
    except OSError as problem:
        print(f"shadow console: {problem}", file=sys.stderr)
        return 1
    return 0

"""The monitoring endpoint: ``/metrics`` and ``/healthz`` served by aiohttp's web server on the
crawl's (or the schedule service's) own event loop, with the loop-lag ticker beside it."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

from aiohttp import web

from crawler.errors import ConfigError
from crawler.metrics import CrawlView, ScheduleStatus
from crawler.metrics.health import Health, LoopLag
from crawler.settings import Settings

SHUTDOWN_S = 1.0  # a scrape still being answered when the crawl ends gets this long

Render = Callable[[str], tuple[bytes, str]]  # the Accept header -> the body and its type


class MetricsServer:
    """``async with server.serving():`` listens on ``host:port`` and ticks the loop-lag
    ticker for as long as the body runs.

    >>> async with MetricsServer("127.0.0.1", 9100, exposition.render, health).serving():
    ...     await engine.run()  # doctest: +SKIP
    """

    def __init__(self, host: str, port: int, render: Render, health: Health) -> None:
        self.host = host
        self.port = port
        self.render = render
        self.health = health
        self.scrapes = 0

    def __repr__(self) -> str:
        return f"<MetricsServer {self.host}:{self.port} scrapes={self.scrapes} {self.health!r}>"

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        try:
            async with asyncio.TaskGroup() as tasks:
                ticker = tasks.create_task(self.health.lag.run(), name="loop-lag")
                runner = await self._start()
                try:
                    yield
                finally:
                    ticker.cancel()
                    await runner.cleanup()
        except BaseExceptionGroup as group:
            # The ticker never fails: the one error is the body's (a crawl's), and it goes on
            # as it was raised, not wrapped in a group.
            if len(group.exceptions) != 1:
                raise
            error = group.exceptions[0]
            raise error from error.__cause__

    async def _start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as error:
            await runner.cleanup()
            # asyncio words a taken port at length; the errno says it in the usual words.
            code = error.errno or 0
            reason = os.strerror(code) if code > 0 else error.strerror
            raise ConfigError(
                f"metrics_port {self.port}: cannot listen on {self.host}:{self.port}: {reason}"
            ) from None
        return runner

    async def _metrics(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        body, content_type = self.render(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _healthz(self, request: web.Request) -> web.Response:
        verdict = self.health.check()
        return web.Response(text=verdict.reason + "\n", status=200 if verdict.healthy else 503)


def check_port(settings: Settings) -> None:
    """Raise the one-line ConfigError ``serve_metrics`` would, before anything is begun (a
    run on record), when ``metrics_port`` is taken: bind it once and let go."""
    if not settings.metrics_port:
        return
    host, port = settings.metrics_host, settings.metrics_port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
            probe.bind(infos[0][4])
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise ConfigError(
            f"metrics_port {port}: cannot listen on {host}:{port}: {reason}"
        ) from None


@asynccontextmanager
async def serve_metrics(
    settings: Settings,
    *,
    crawl: CrawlView | None = None,
    schedules: Callable[[], Iterable[ScheduleStatus]] | None = None,
) -> AsyncIterator[None]:
    """While the body runs, serve ``/metrics`` and ``/healthz`` when ``metrics_port`` is set:
    a crawl's (``crawler run``) or the schedules' (``crawler schedule``), and the loop's lag.

    >>> async with serve_metrics(settings, crawl=engine):
    ...     await engine.run()  # doctest: +SKIP
    """
    if not settings.metrics_port:
        yield
        return
    # The optional extra: Settings refuses a metrics_port when it is not installed.
    from crawler.metrics import prometheus  # noqa: PLC0415

    threshold = settings.loop_lag_threshold_s
    lag = LoopLag(threshold)
    render = prometheus.Exposition.of(lag.lag_s, crawl, schedules).render
    server = MetricsServer(
        settings.metrics_host, settings.metrics_port, render, Health(lag, threshold, crawl)
    )
    async with server.serving():
        yield

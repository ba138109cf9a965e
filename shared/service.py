"""What every service process is made of, assembled in one place: settings, logging, broker, Redis, the
batch runner with its dead-letter topic, and the HTTP router with health, readiness and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker

from shared.http import ASGIApp, Health, Router, ServiceApp
from shared.kafka import BatchRunner, make_broker
from shared.logging import configure_logging, get_logger
from shared.redis import make_redis, redis_ready
from shared.settings import ServiceSettings

Hook = Callable[[], Awaitable[None]]
log = get_logger(__name__)

GC_YOUNG_THRESHOLD = 20_000
"""Net new container objects that start a collection of the youngest generation (Python's default is 700).

A consumer's batch keeps its records, events and state alive until the batch ends, several thousand objects at
once, so at 700 the collector ran several times per batch and walked those objects each time, to free next to
nothing: the batch's garbage has no cycles and goes with its last reference. Measured on the comments consumer
over 20,000 decisions: 309 collections, 5 % of its CPU, freed 21 objects; at this threshold, one or none."""


def settle_garbage_collector() -> None:
    """Once a service has started: collect what start-up left, move the survivors (modules, settings, the spam model,
    the connections) out of the collector's sight, for good, and collect the young generation less often.

    The collector's full passes walk every object it tracks; start-up objects live as long as the process, so each
    pass walked them for nothing. A frozen object is never collected, so this runs once start-up is over, when what
    exists is what the process keeps."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def cancel_and_wait(task: asyncio.Task[Any] | None, *, within: float = 5.0) -> bool:
    """Cancel a background task and wait until it has ended, cancelling it again while it carries on.

    A cancellation can be lost inside a library (on Python 3.11, `asyncio.wait_for` drops one that lands just as
    its inner await completes), and a shutdown that cancels once and then awaits the task waits for ever.
    Gives up after `within` seconds, with a warning naming the task; returns whether the task ended.
    """
    if task is None:
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("background task did not stop", task=task.get_name())
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(0.25, remaining))
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()  # retrieved, so asyncio does not report it as never retrieved
    return True


def awaiting(task: asyncio.Task[Any]) -> str:
    """The chain of awaits a task is suspended in, outermost first (`Task.get_stack` gives only the first)."""
    frames: list[tuple[Any, int]] = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = next((getattr(awaited, a) for a in ("cr_frame", "gi_frame", "ag_frame") if hasattr(awaited, a)), None)
        if frame is None:
            break
        frames.append((frame, frame.f_lineno))
        awaited = next((getattr(awaited, a) for a in ("cr_await", "gi_yieldfrom", "ag_await") if hasattr(awaited, a)),
                       None)
    return "".join(traceback.StackSummary.extract(iter(frames)).format())


def log_task_stacks() -> None:
    """Log where every task of this process is waiting: a consumer that stopped moving (lag that does not go
    down, no error logged) says which await holds it. Sent by `kill -USR1 <pid>`; the process carries on."""
    tasks = sorted(asyncio.all_tasks(), key=lambda task: task.get_name())
    for task in tasks:
        log.warning("task stack", task=task.get_name(), stack=awaiting(task)[-6000:])
    log.warning("task stacks logged", tasks=len(tasks))


@dataclass
class Runtime:
    service: str
    settings: ServiceSettings
    broker: KafkaBroker
    redis: aioredis.Redis
    runner: BatchRunner
    router: Router
    health: Health
    before_start: list[Hook] = field(default_factory=list)
    """Run before the broker starts consuming (state the handlers need)."""
    on_startup: list[Hook] = field(default_factory=list)
    """Run once the broker is connected and consuming."""
    on_shutdown: list[Hook] = field(default_factory=list)
    _lag_reporter: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def app(self, *, reader: ASGIApp | None = None) -> ServiceApp:
        log = get_logger(self.service)

        async def started() -> None:
            with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
                asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, log_task_stacks)
            for hook in self.on_startup:
                await hook()
            settle_garbage_collector()
            self._lag_reporter = asyncio.create_task(self.runner.report_lag_between_batches(), name="lag-reporter")
            log.info("service started", service=self.service)

        async def preparing() -> None:
            for hook in self.before_start:
                await hook()

        async def stopping() -> None:
            self.runner.stopping.set()
            await cancel_and_wait(self._lag_reporter)

        async def stopped() -> None:
            for hook in self.on_shutdown:
                await hook()
            await self.runner.close()
            await self.redis.aclose()
            log.info("service stopped", service=self.service)

        stream_app = AsgiFastStream(
            self.broker,
            on_startup=[preparing],
            after_startup=[started],
            on_shutdown=[stopping],
            after_shutdown=[stopped],
        )
        return ServiceApp(stream_app, self.router, reader)


def build_runtime(service: str, settings: ServiceSettings, *, max_body_bytes: int = 1024 * 1024) -> Runtime:
    configure_logging(service, level=settings.log_level, fmt=settings.log_format)
    broker = make_broker(settings, service)
    client = make_redis(settings)
    runner = BatchRunner(service, broker, settings)
    router = Router(service, max_body_bytes=max_body_bytes)
    health = Health()

    async def kafka_ready() -> tuple[bool, str]:
        ok = await broker.ping(timeout=2.0)
        return ok, "kafka ok" if ok else "kafka unreachable"

    async def redis_check() -> tuple[bool, str]:
        return await redis_ready(client)

    health.checks.update({"kafka": kafka_ready, "redis": redis_check})
    health.install(router)
    return Runtime(service, settings, broker, client, runner, router, health)



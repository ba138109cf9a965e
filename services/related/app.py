"""The related process: the Check Also engine, kept in step with the articles topic (see `worker.py`)."""

from __future__ import annotations

from services.related.config import RelatedSettings
from services.related.worker import SERVICE, RelatedWorker
from shared.http import ServiceApp
from shared.service import build_runtime


def create_app(settings: RelatedSettings | None = None) -> ServiceApp:
    settings = settings or RelatedSettings()
    runtime = build_runtime(SERVICE, settings)
    worker = RelatedWorker(settings, runtime.broker, runtime.runner)
    runtime.health.checks["index"] = worker.ready
    runtime.on_startup.append(worker.start)
    runtime.on_shutdown.append(worker.stop)
    return runtime.app()

from services.ingest.app import create_app
from services.ingest.config import IngestSettings
from shared.http import serve
from shared.settings import load_settings

settings = load_settings(IngestSettings, "ingest")
serve(create_app(settings), settings.http_host, settings.ingest_http_port)

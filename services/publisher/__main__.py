from services.publisher.app import create_app
from services.publisher.config import PublisherSettings
from services.publisher.server import run
from shared.settings import load_settings

settings = load_settings(PublisherSettings, "publisher")
app, reader = create_app(settings)
run(app, reader, settings.http_host, settings.publisher_http_port)

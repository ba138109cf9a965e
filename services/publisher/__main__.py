from services.publisher.app import create_app
from services.publisher.config import PublisherSettings
from shared.http import serve

settings = PublisherSettings()
serve(create_app(settings), settings.http_host, settings.publisher_http_port)

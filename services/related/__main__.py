from services.related.app import create_app
from services.related.config import RelatedSettings
from shared.http import serve

settings = RelatedSettings()
serve(create_app(settings), settings.http_host, settings.related_http_port)

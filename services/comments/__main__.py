from services.comments.app import create_app
from services.comments.config import CommentsSettings
from shared.http import serve

settings = CommentsSettings()
serve(create_app(settings), settings.http_host, settings.comments_http_port)

from services.comments.app import create_app
from services.comments.config import CommentsSettings
from shared.http import serve
from shared.settings import load_settings

settings = load_settings(CommentsSettings, "comments")
serve(create_app(settings), settings.http_host, settings.comments_http_port)

import os

# One BLAS thread unless the operator says otherwise (set before numpy loads): the engine's matrix products are
# small, and next to other processes on few cores a second, spinning BLAS thread only steals their time.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from services.related.app import create_app
from services.related.config import RelatedSettings
from shared.http import serve
from shared.settings import load_settings

settings = load_settings(RelatedSettings, "related")
serve(create_app(settings), settings.http_host, settings.related_http_port)

# syntax=docker/dockerfile:1
#
# One image for every Broadsheet service. The service is the command:
#
#   docker run broadsheet services.ingest      (or services.related, services.comments, services.publisher)
#   docker run broadsheet shared.cli topics create
#
# Build: docker build -t broadsheet .
# The first stage resolves dependencies from uv.lock alone, so editing code does not reinstall them.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install --no-cache-dir "uv==${UV_VERSION}"

WORKDIR /app

# Layer 1: third-party dependencies, from the lock file only.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-install-project --no-dev

# Layer 2: the project itself.
COPY README.md ./
COPY shared ./shared
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev \
    && /app/.venv/bin/python -m compileall -q shared services


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="broadsheet" \
      org.opencontainers.image.description="Event-driven news publishing: ingest, related, comments, publisher"

# A fixed numeric uid lets Kubernetes verify runAsNonRoot without resolving names.
RUN groupadd --system --gid 10001 broadsheet \
    && useradd --system --uid 10001 --gid broadsheet --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin broadsheet

WORKDIR /app
COPY --from=build --chown=root:root /app /app

# The code is read-only at run time (bytecode was compiled at build time); only /tmp is written.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HTTP_HOST=0.0.0.0 \
    LOG_FORMAT=json \
    ENVIRONMENT=production

USER 10001:10001

# publisher, ingest, comments, related
EXPOSE 8080 8081 8082 8083

ENTRYPOINT ["python", "-m"]
CMD ["services.publisher"]

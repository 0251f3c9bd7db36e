# syntax=docker/dockerfile:1
#
# oml: online-learning microservice for Kafka.
#
#   docker build -t oml-stream .
#   docker run --rm -p 9100:9100 -e OML_BOOTSTRAP_SERVERS=kafka:9092 oml-stream run ...
#
# Stage 1 builds wheels for oml-stream and every dependency; stage 2 installs them
# offline (no compiler, no build tools, no pip cache) and runs as an unprivileged user.
# Needs BuildKit (the default builder since Docker 23) for the RUN --mount below.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# .dockerignore lets in only pyproject.toml, README/LICENSE, oml/ and algorithms/.
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OML_METRICS__PORT=9100
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/oml_stream-*.whl \
    && groupadd --system --gid 10001 oml \
    && useradd --system --uid 10001 --gid oml --home-dir /var/lib/oml --create-home \
       --shell /usr/sbin/nologin oml
WORKDIR /var/lib/oml
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 9100
# Liveness through /healthz, with the standard library only (slim has no curl).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import http.client as h, os, sys; c = h.HTTPConnection('127.0.0.1', int(os.environ.get('OML_METRICS__PORT', '9100')), timeout=4); c.request('GET', '/healthz'); sys.exit(c.getresponse().status != 200)"]
ENTRYPOINT ["oml"]
CMD ["run"]

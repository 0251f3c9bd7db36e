# syntax=docker/dockerfile:1
#
# oml: online-learning microservice for Kafka.
#
#   docker build -t oml-stream .
#   docker run --rm -p 9100:9100 -e OML_BOOTSTRAP_SERVERS=kafka:9092 oml-stream run ...
#
# Stage 1 builds wheels: first the dependencies alone, pinned by constraints.txt (a layer that
# a code change does not rebuild), then oml-stream itself.  Stage 2 installs them offline (no
# compiler, no build tools, no pip cache) and runs as an unprivileged user.  The runtime is the
# service only: no bench or plot dependencies, no embedded broker (extras [bench], [plot],
# [broker] are left out), so it needs a Kafka cluster (OML_BOOTSTRAP_SERVERS).
# Needs BuildKit (the default builder since Docker 23) for the RUN --mount below.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The dependency layer: only pyproject.toml and the constraints.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.txt -c constraints.txt
# The code: .dockerignore lets in only pyproject.toml, README/LICENSE, constraints.txt, oml/
# and algorithms/.
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OML_METRICS__PORT=9100
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,from=build,source=/src/constraints.txt,target=/constraints.txt \
    pip install --no-cache-dir --no-index --find-links=/wheels -c /constraints.txt \
       /wheels/oml_stream-*.whl \
    && groupadd --system --gid 10001 oml \
    && useradd --system --uid 10001 --gid oml --home-dir /var/lib/oml --create-home \
       --shell /usr/sbin/nologin oml
WORKDIR /var/lib/oml
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 9100
# Liveness through /healthz on the port the service was started with (--metrics-port or
# --set metrics.port on its command line, else OML_METRICS__PORT): see oml/healthcheck.py.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "oml.healthcheck"]
ENTRYPOINT ["oml"]
CMD ["run"]

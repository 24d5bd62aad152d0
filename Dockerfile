# The runtime image Fly builds (fly.toml [build]): slim Python, runtime requirements only,
# a non-root user. `make image` builds it with podman or buildah where they work.
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/alfred-metrics \
    ALFRED_VAR_DIR=/app/var

# Only `make image` passes these: pip installs from a wheelhouse it downloaded (machines whose
# network a build container cannot use). Unset, pip uses PyPI as usual (Fly's builder).
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX

WORKDIR /app
# A virtualenv, so the same steps work on a distribution's Python (PEP 668) as on python:slim.
# Wheels exist for every pin (psycopg[binary], hiredis, cryptography): no compiler needed.
COPY requirements.txt ./
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install -r requirements.txt
ENV PATH=/opt/venv/bin:$PATH

COPY alfred ./alfred
COPY celeryconfig.py wsgi.py Procfile ./
COPY scripts/start-stack.sh ./scripts/

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin alfred \
    && mkdir -p /app/var \
    && chown alfred /app/var
USER alfred

EXPOSE 8080
CMD ["bash", "scripts/start-stack.sh"]

# analytics-mock: a mock Hitachi Ops Center Analyzer (email server settings API).
#   docker build -t analytics-mock .
#   docker run -e ANALYTICS_MOCK_CONTROL_TOKEN="$TOKEN" -p 127.0.0.1:22015:22015 \
#     -p 127.0.0.1:22016:22016 -v analytics-mock:/data analytics-mock
# The server binds 0.0.0.0 inside the container, so the test controls under /_mock/ need
# `Authorization: Bearer $TOKEN`; without ANALYTICS_MOCK_CONTROL_TOKEN it makes one up and
# prints it once in the log (docker logs). See docs/security.md.
# Every stage starts from the same base image, so the virtual environment built in the first
# stage runs unchanged in the second (its interpreter path is the same).
ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# The dependencies' wheels first, from pyproject.toml alone, so that a change to the sources
# does not download them again.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; e = p['optional-dependencies']; print(*p['dependencies'], *e['postgres'], *e['migrate'], sep='\n')" > requirements.txt \
 && python -m pip wheel --wheel-dir /wheels -r requirements.txt
COPY README.md ./
COPY src ./src
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/analytics-mock \
 && /opt/analytics-mock/bin/pip install --no-index --find-links /wheels 'analytics-mock[postgres,migrate]'

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 analytics-mock \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home analytics-mock \
 && mkdir /data && chown 10001:10001 /data
COPY --from=build /opt/analytics-mock /opt/analytics-mock
# Inside the image only, listen on every interface: the port mapping decides who can reach it,
# and off loopback the control API requires a token (given, or generated and logged once).
ENV PATH=/opt/analytics-mock/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ANALYTICS_MOCK_HOST=0.0.0.0 \
    ANALYTICS_MOCK_PORT=22015 \
    ANALYTICS_MOCK_HTTPS_PORT=22016 \
    ANALYTICS_MOCK_DATABASE_URL=sqlite:////data/analytics-mock.db
# The SQLite database, the key of the stored SMTP password and the self-signed certificate.
VOLUME /data
WORKDIR /data
USER 10001:10001
EXPOSE 22015 22016
# Healthy means ready: the database answers at the newest schema (GET /readyz, no credentials).
# No curl in a slim image, so Python asks; any error or non-2xx status exits non-zero.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('ANALYTICS_MOCK_PORT', '22015'), timeout=4)"]
ENTRYPOINT ["analytics-mock"]
CMD ["serve"]

# The crawler image: the package, the example spiders and the default settings.
# An online build takes python:3.11-slim. An offline build swaps the base and brings its wheels,
# resolved by the base's Python to the patch level (markers read python_full_version):
#   pip wheel ".[metrics,redis]" -w wheelhouse
#   docker build --build-arg PYTHON_IMAGE=<a local image with python and pip on PATH> .
# (scripts/compose-smoke does both, with a base image built by debootstrap.)
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}
WORKDIR /app
# With the metrics extra: the scheduler serves /metrics and /healthz; with the redis extra,
# workers share a crawl on a Redis frontier (--frontier). Built outside /app, so the source tree
# cannot shadow the installed package for `python -c`.
# Schedules name IANA zones, so the build fails if Europe/Berlin does not load.
COPY wheelhouse /tmp/src/wheelhouse
COPY pyproject.toml README.md /tmp/src/
COPY crawler /tmp/src/crawler
RUN if ls /tmp/src/wheelhouse/*.whl >/dev/null 2>&1; then \
        pip install --no-cache-dir --no-index --find-links /tmp/src/wheelhouse "crawler[metrics,redis]"; \
    else \
        pip install --no-cache-dir "/tmp/src[metrics,redis]"; \
    fi \
    && rm -rf /tmp/src \
    && python -c "import zoneinfo; zoneinfo.ZoneInfo('Europe/Berlin')" \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin crawler \
    && mkdir -p /data && chown crawler:crawler /data
COPY spiders ./spiders
COPY config ./config
# Feeds, stats and crawl state live in /data so that a restarted container resumes its crawl.
VOLUME /data
USER crawler
# The first SIGINT finishes requests in flight and saves; the crawl resumes on the next start.
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["python", "-c", "import crawler"]
ENTRYPOINT ["crawler"]
CMD ["demo", "-o", "/data/books.jsonl"]

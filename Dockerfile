# The crawler image: the package, the example spiders and the default settings.
# The base image is pinned to a version; override it for an offline build with
#   docker build --build-arg BASE_IMAGE=<local image> .
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}
WORKDIR /app
COPY pyproject.toml README.md ./
COPY crawler ./crawler
RUN pip install --no-cache-dir . \
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

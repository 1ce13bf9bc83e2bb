# The crawler image: the package, the example spiders and the default settings.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY crawler ./crawler
RUN pip install --no-cache-dir .
COPY spiders ./spiders
COPY config ./config
# Feeds, stats and crawl state live in /data so that a restarted container resumes its crawl.
VOLUME /data
ENTRYPOINT ["crawler"]
CMD ["demo", "-o", "/data/books.jsonl"]

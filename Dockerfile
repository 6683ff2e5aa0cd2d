# The related-stories API (gunicorn) and, with another command, the trainer/publisher (recs).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Sources first, then one install: the package is small, and its dependencies are wheels.
COPY pyproject.toml README.md ./
COPY models ./models
COPY service ./service
COPY scripts ./scripts
# With the [dask] extra: the same image runs the Dask scheduler and workers of the compose
# `scale` profile, and the trainer that uses them (recs train --cluster).
RUN pip install '.[dask]'

COPY gunicorn.conf.py ./
# The demo corpus, so the compose trainer needs no external data.
COPY data/sample ./data/sample

# Unprivileged user; /models is where a trainer container writes model directories (a named
# volume mounted there inherits this ownership).
RUN useradd --system --uid 10001 --no-create-home --home-dir /app recs \
    && mkdir -p /models \
    && chown recs /models
USER recs

# Inside a container the API must listen on all interfaces; gunicorn.conf.py reads this.
# Several workers: /metrics sums their counters through files here (emptied at start).
ENV RECS_BIND=0.0.0.0:8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus-multiproc
EXPOSE 8000

CMD ["gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"]

# syntax=docker/dockerfile:1
# The service image: one image, two roles (web by default; `python -m jobs.worker` for workers).
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIPENV_VENV_IN_PROJECT=1 \
    PIPENV_VERBOSITY=-1

WORKDIR /app

# Dependencies first, from the lock, so code changes do not reinstall them.
COPY Pipfile Pipfile.lock ./
RUN pip install pipenv==2026.10.3 \
    && pipenv sync \
    && pip uninstall --yes pipenv \
    && rm -rf /root/.cache

COPY . .
# var/journal exists (and is the service user's) in the image, so a named volume mounted
# there (docker-compose.yml: the web's journal) starts with that owner.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app metaparse \
    && mkdir -p /app/var/journal && chown -R metaparse /app/var
USER metaparse

ENV PATH=/app/.venv/bin:$PATH \
    BIND=0.0.0.0 \
    PORT=8000
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz\", timeout=4)"]

CMD ["gunicorn", "--config", "gunicorn.conf.py", "server:create_app()"]

# Serves the B-ALL smear classifier with gunicorn (CPU TensorFlow).
#   docker build -t all-classifier .
#   docker run --rm -p 8000:8000 -e SECRET_KEY="$(openssl rand -hex 32)" all-classifier
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/app

# Dependencies first, in their own layer: code changes do not reinstall TensorFlow.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /srv/app --no-create-home --shell /usr/sbin/nologin app

# Only what serving needs; code stays root-owned, so the app user cannot change it.
COPY app/ app/
COPY models/ models/
COPY static/ static/
COPY templates/ templates/
COPY wsgi.py gunicorn.conf.py ./

# Case records: SQLite and the photographs in the /data volume unless DATABASE_URL names
# a PostgreSQL server; the schema is created or upgraded when the app starts.
RUN mkdir /data && chown app:app /data
VOLUME ["/data"]
ENV APP_ENV=production \
    PORT=8000 \
    DATABASE_URL=sqlite:////data/cases.sqlite3 \
    IMAGE_STORE=/data/images
USER 10001:10001
EXPOSE 8000

# Ready means every model is loaded and warmed; loading takes a while after start.
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/readyz', timeout=4)"]

CMD ["gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"]

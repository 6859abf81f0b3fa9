# The exai daemon image: `exai serve` by default; the same image runs `exai fake-llm` and
# `exai loadgen` in docker-compose.yml's demo profile.
FROM python:3.11.13-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY app ./app
COPY otel ./otel
RUN python -m venv /opt/exai \
    && /opt/exai/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/exai/bin/pip install --no-cache-dir -c requirements.lock .

FROM python:3.11.13-slim-bookworm
RUN useradd --system --uid 10001 --create-home --home-dir /home/exai exai
COPY --from=build /opt/exai /opt/exai
ENV PATH=/opt/exai/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    EXAI_WS_HOST=0.0.0.0 \
    HEALTH_CHECK_HOST=0.0.0.0
USER exai
WORKDIR /home/exai
EXPOSE 8079 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HEALTH_CHECK_PORT', '8081') + '/health/live', timeout=2)"]
ENTRYPOINT ["exai"]
CMD ["serve"]

# The Engram image: the `engram` command (gateway, worker, CLI). nats-server
# runs in its own containers (the official image), so the server extra is not
# installed here. Build: docker build -t engram .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY libs ./libs
COPY services ./services
COPY cli ./cli
# /nats-auth: where `engram nats-auth init` writes the NATS auth secrets in
# docker-compose (a named volume mounted there starts with this ownership)
RUN pip install . && useradd --system --uid 10001 engram \
    && mkdir /nats-auth && chown engram /nats-auth && chmod 0700 /nats-auth
USER engram

# the gateway's HTTP and gRPC ports and a worker's /metrics, /health, /ready
EXPOSE 7432 7433 9464
ENTRYPOINT ["engram"]
CMD ["gateway"]

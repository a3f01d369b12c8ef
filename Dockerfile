# tnx CRM: one image for every process of the stack (server, worker, scheduler, gateway,
# MCP); the command picks which. Built from a checkout: `docker build -t tnx-crm .`
# (see README, "Containers"). PostgreSQL and the broker are separate services.

# -- build: the server's wheel (it carries the gateway template, the OpenAPI document and the
# .proto files; the gateway compiles its descriptor set from them on first start) -------------
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml requirements.lock ./
COPY server ./server
COPY clients/python ./clients/python
COPY proto ./proto
COPY gateway/envoy.yaml.tmpl gateway/openapi.json ./gateway/
RUN python -m venv /opt/tnx \
    && /opt/tnx/bin/pip install -c requirements.lock .

# -- run: the virtualenv only, as an unprivileged user ----------------------------------------
FROM python:3.11-slim-bookworm
ENV PATH=/opt/tnx/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CRM_DATA_DIR=/var/lib/tnx-crm \
    CRM_GRPC_HOST=0.0.0.0 \
    CRM_HTTP_HOST=0.0.0.0 \
    CRM_MCP_HOST=0.0.0.0 \
    CRM_LOG_FORMAT=json
RUN groupadd --system --gid 10001 tnx \
    && useradd --system --uid 10001 --gid tnx --home-dir /var/lib/tnx-crm --create-home tnx
COPY --from=build /opt/tnx /opt/tnx
USER 10001:10001
WORKDIR /var/lib/tnx-crm
EXPOSE 50051 8080 8090 9464
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["tnx-crm", "health"]
ENTRYPOINT ["tnx-crm"]
CMD ["serve"]

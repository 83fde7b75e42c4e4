# This project's own image: the `llmops` command (the retrieval freshness CronJob runs it).
# Build from the repository root, push to your registry, and pin the pushed digest in
# llmops:retrieval.freshness.image:
#   docker build -f components/images/llmops.Dockerfile -t <registry>/llmops/llmops:0.1.0 .
FROM python:3.11-slim
WORKDIR /opt/llmops
COPY pyproject.toml constraints.txt README.md ./
COPY llmops ./llmops
COPY components ./components
COPY runbooks ./runbooks
COPY policies ./policies
RUN pip install --no-cache-dir -c constraints.txt . && useradd --uid 1000 --no-create-home llmops
# Runs as the same non-root user the manifests ask for.
USER 1000:1000

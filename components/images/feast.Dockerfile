# The feature-store image: Feast with its Redis online store and AWS (S3 registry) support.
#   docker build -f components/images/feast.Dockerfile -t <registry>/llmops/feast:0.67.0 .
FROM python:3.11-slim
RUN pip install --no-cache-dir 'feast[redis,aws]==0.67.0'
USER 1000:1000
WORKDIR /etc/feast

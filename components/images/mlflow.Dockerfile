# The registry image: MLflow's server plus the PostgreSQL driver and the AWS SDK it needs
# (S3 artifacts, Secrets Manager through components/entrypoints/secret_exec.py).
# Build, push to your registry, and pin the pushed digest in llmops:registry.image:
#   docker build -f components/images/mlflow.Dockerfile -t <registry>/llmops/mlflow:3.17.2 .
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir psycopg2-binary==2.9.13 boto3==1.44.5
# Runs as the same non-root user the manifests ask for.
USER 1000:1000

# One image for the operator and the tenant servers, built from this repository's package.
#   docker build -t ghcr.io/mtdicom/multitenant-dicom:0.1.0 .
# The operator runs the default command; tenant pods override it with
#   command: [tenant-server]  args: [--config, /etc/tenant-server/config.json, --server, AET]
# (the operator writes that into every Deployment). No Docker engine runs on the development
# machines: tests/operator/test_dockerfile.py checks this file statically, and the
# end-to-end test runs the very command line the Deployments carry from the installed package.

FROM python:3.11-slim AS build
WORKDIR /src
# What pyproject.toml packages: the tenant server, the operator and the local Orthanc helper.
COPY pyproject.toml README.md ./
COPY tenant_server/ tenant_server/
COPY operator/ operator/
COPY scripts/local_orthanc/ scripts/local_orthanc/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# A fixed numeric non-root user: the CRD's default runAsUser/fsGroup and the chart's
# securityContext use 10001, and runAsNonRoot can only verify a numeric USER.
RUN groupadd --gid 10001 mtdicom \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin mtdicom
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
# 8080: the operator's liveness endpoint, and the tenant servers' /livez /readyz /metrics.
EXPOSE 8080
# Cluster-wide by default; the Helm chart passes --namespace NS (repeatable) instead.
CMD ["kopf", "run", "--standalone", "-m", "mtdicom_operator", "--liveness=http://0.0.0.0:8080/healthz", "--all-namespaces"]

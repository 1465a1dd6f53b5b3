# The code location's image: bdt_platform with its dbt project and the pins of pyproject.toml,
# serving bdt_platform.definitions over gRPC on port 4000. Dagster's Helm chart runs it as the
# code server, as each run's pod (K8sRunLauncher), and as its webserver and daemon
# (deploy/helm/values.yaml, docs/deploy-gcp.md).
#
#   docker build -t REGION-docker.pkg.dev/PROJECT_ID/bdt/bdt-platform:TAG .
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BDT_HOME=/opt/dagster/bdt_home

# The extras installed beside the dependencies (pyproject.toml [project.optional-dependencies]).
ARG BDT_EXTRAS=k8s

WORKDIR /opt/dagster/app

# The pinned dependencies first, in their own layer (rebuilt only when pyproject.toml changes).
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = [e for e in '${BDT_EXTRAS}'.split(',') if e]; \
print('\n'.join(p['dependencies'] + [d for e in extras for d in p['optional-dependencies'][e]]))" \
    > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

# The package, installed in place (editable): the code finds dbt_project/ beside it, as in the
# repository (core/settings.py, warehouse/project.py).
COPY bdt_platform ./bdt_platform
COPY dbt_project ./dbt_project
RUN pip install --no-deps -e . \
 && python -c "from bdt_platform.warehouse.project import prepare_manifest; prepare_manifest()"

# Not root: uid 1000 in group 0, which may read the secret files mounted 0440 and write the
# homes (BDT_HOME: dbt's target folders and parse state; DAGSTER_HOME for bdt's own commands).
RUN useradd --uid 1000 --gid 0 --home-dir /opt/dagster --no-create-home bdt \
 && mkdir -p "$BDT_HOME" /opt/dagster/dagster_home \
 && chown -R 1000:0 /opt/dagster \
 && chmod -R g=u /opt/dagster
USER 1000:0

EXPOSE 4000
# No ENTRYPOINT: the chart replaces these arguments with its own `dagster api grpc ...` (and
# `dagster-webserver ...`, `dagster-daemon run ...`, `dagster api execute_run ...`).
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "bdt_platform.definitions"]

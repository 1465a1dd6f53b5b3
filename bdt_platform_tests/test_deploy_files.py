"""The deployment on paper, checked against the code: ``Dockerfile``, ``deploy/helm/values.yaml``
(Dagster's Helm chart) and the manifests in ``deploy/k8s/`` (docs/deploy-gcp.md).

What the code reads is not a list kept here: ``load_settings`` is run on a mapping that records
every name it asks for (until no new name appears), and that set is checked against a plain
reading of ``core/settings.py``. Which of them are secrets comes from the code too: a variable
whose value the ``Settings`` repr never shows is one. Then, for the code server's pod and for a
run's pod as the chart builds them, every variable read must be provided (or be one of
``LEFT_UNSET``, each with its reason), every secret must come from a Kubernetes Secret, and the
environment they get must load as ``BDT_ENV=prod``. Each ``check_*`` returns its problems, so
the last tests can break a copy of the files and see the checks fail.
"""

from __future__ import annotations

import ast
import copy
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest
import yaml

from bdt_platform.core import settings as settings_module
from bdt_platform.core.settings import SettingsError, load_settings

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
VALUES = REPO / "deploy" / "helm" / "values.yaml"
MANIFESTS = REPO / "deploy" / "k8s"
DOCS = REPO / "docs" / "deploy-gcp.md"

#: Read by the code but deliberately not set in the cluster, and why. Set there, they fail.
LEFT_UNSET = {
    "STORAGE_EMULATOR_HOST": "tests only: would point production at a GCS emulator",
    "BIGQUERY_EMULATOR_HOST": "tests only: would point production at a BigQuery emulator",
    "BDT_DBT_PROJECT_DIR": "the image keeps the repository's layout, dbt_project/ beside the "
                           "package, which is the default (and what reports/outcomes.py uses)",
    "BDT_SITE_SECRET": "read by `bdt serve` (the report site) only, which this chart does not run",
    "BDT_SITE_IDENTITY_HEADER": "read by `bdt serve` only",
    "BDT_SITE_TARGETS": "read by `bdt serve` only; the shipped targets otherwise",
}

#: Valid values to load the settings with, each distinct, so a value the repr does not show
#: marks a secret. A new variable without one gets ``sample-<name>``.
SAMPLES = {
    "BDT_ENV": "prod",
    "BDT_HOME": "/sample/home",
    "BDT_INBOX": "sftp://sample@sftp.sample.example:2222/inbox",
    "BDT_SFTP_KEY": "/sample/sftp/id_key",
    "BDT_SFTP_KNOWN_HOSTS": "/sample/sftp/known_hosts",
    "BDT_PII_KEY": "sample-pii-key-7f3a9c",
    "DAGSTER_HOME": "/sample/dagster_home",
    "BDT_CASEMGMT_URL": "postgresql://casemgmt.sample.example/casemgmt",
    "BDT_GCP_PROJECT": "sample-project",
    "BDT_GCS_BUCKET": "sample-bucket",
    "BDT_BQ_LOCATION": "europe-west3",
    "BDT_BQ_MAX_BYTES_BILLED": "123456789",
    "BDT_BQ_RETRY_SECONDS": "120",
    "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9023",
    "BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:9050",
    "BDT_DAGSTER_PG_URL": "postgresql://u:sample-pg-password@db.sample.example:5432/dagster",
    "BDT_DBT_PROJECT_DIR": "/sample/dbt_project",
    "BDT_PARTNERS": "/sample/partners.yaml",
    "BDT_OUTREACH_CONFIG": "/sample/outreach.yaml",
    # Read when the resources are built: a file that exists (the shipped one).
    "BDT_SCHEDULES": str(REPO / "bdt_platform" / "ops" / "schedules.yaml"),
    "BDT_SMTP_PASSWORD": "sample-smtp-password-2c8e",
    "BDT_ALERT_WEBHOOK_URL": "https://hooks.sample.example/sample-webhook-token",
    "BDT_MAIL_PIECE_COST_USD": "0.4321",
    "BDT_SITE_SECRET": "sample-site-secret-55e1",
    "BDT_SITE_IDENTITY_HEADER": "X-Sample-User",
    "BDT_SITE_TARGETS": "/sample/targets.yaml",
    "BDT_SITE_URL": "https://reports.sample.example",
}

#: The chart's own defaults that these checks need (dagster/dagster values.yaml).
CHART_DAGSTER_HOME = "/opt/dagster/dagster_home"

#: The keys of Dagster's chart these values may use, as in the chart's values.schema.json and
#: templates (helm/dagster in dagster-io/dagster: values.schema.json, configmap-instance.yaml,
#: helpers/instance/_concurrency.tpl, the dagster-user-deployments subchart's values.yaml);
#: written out here because the chart is not vendored. ``[]`` is a list's item; ``.*`` a
#: Kubernetes object (or free map) the chart passes through. Add a key only after finding it
#: in the chart of the pinned Dagster version.
CHART_KEYS = """
global.serviceAccountName
global.postgresqlSecretName
global.dagsterHome
serviceAccount.create
serviceAccount.name
serviceAccount.annotations.*
telemetry.enabled
dagsterWebserver.image.repository
dagsterWebserver.image.tag
dagsterWebserver.image.pullPolicy
dagsterWebserver.env.*
dagsterWebserver.envConfigMaps[].name
dagsterWebserver.envSecrets[].name
dagsterWebserver.resources.*
dagsterDaemon.image.repository
dagsterDaemon.image.tag
dagsterDaemon.image.pullPolicy
dagsterDaemon.env.*
dagsterDaemon.envConfigMaps[].name
dagsterDaemon.envSecrets[].name
dagsterDaemon.resources.*
dagsterDaemon.runCoordinator.enabled
dagsterDaemon.runCoordinator.type
dagsterDaemon.runCoordinator.config.queuedRunCoordinator.maxConcurrentRuns
dagsterDaemon.runCoordinator.config.queuedRunCoordinator.tagConcurrencyLimits.*
dagsterDaemon.runCoordinator.config.queuedRunCoordinator.dequeueIntervalSeconds
dagsterDaemon.runMonitoring.enabled
dagsterDaemon.runMonitoring.startTimeoutSeconds
dagsterDaemon.runMonitoring.cancelTimeoutSeconds
dagsterDaemon.runMonitoring.maxResumeRunAttempts
dagsterDaemon.runMonitoring.pollIntervalSeconds
dagsterDaemon.runMonitoring.freeSlotsAfterRunEndSeconds
dagsterDaemon.runRetries.enabled
dagsterDaemon.runRetries.maxRetries
dagster-user-deployments.enabled
dagster-user-deployments.enableSubchart
dagster-user-deployments.imagePullSecrets.*
dagster-user-deployments.serviceAccount.create
dagster-user-deployments.serviceAccount.name
dagster-user-deployments.serviceAccount.annotations.*
dagster-user-deployments.deployments[].name
dagster-user-deployments.deployments[].image.repository
dagster-user-deployments.deployments[].image.tag
dagster-user-deployments.deployments[].image.pullPolicy
dagster-user-deployments.deployments[].dagsterApiGrpcArgs
dagster-user-deployments.deployments[].port
dagster-user-deployments.deployments[].includeConfigInLaunchedRuns.enabled
dagster-user-deployments.deployments[].env.*
dagster-user-deployments.deployments[].envConfigMaps[].name
dagster-user-deployments.deployments[].envSecrets[].name
dagster-user-deployments.deployments[].volumes.*
dagster-user-deployments.deployments[].volumeMounts.*
dagster-user-deployments.deployments[].resources.*
dagster-user-deployments.deployments[].podSecurityContext.*
dagster-user-deployments.deployments[].securityContext.*
dagster-user-deployments.deployments[].readinessProbe.*
dagster-user-deployments.deployments[].annotations.*
dagster-user-deployments.deployments[].labels.*
runLauncher.type
runLauncher.config.k8sRunLauncher.jobNamespace
runLauncher.config.k8sRunLauncher.envConfigMaps[].name
runLauncher.config.k8sRunLauncher.envSecrets[].name
runLauncher.config.k8sRunLauncher.envVars
runLauncher.config.k8sRunLauncher.volumes.*
runLauncher.config.k8sRunLauncher.volumeMounts.*
runLauncher.config.k8sRunLauncher.resources.*
runLauncher.config.k8sRunLauncher.runK8sConfig.*
postgresql.enabled
postgresql.postgresqlHost
postgresql.postgresqlUsername
postgresql.postgresqlDatabase
postgresql.postgresqlParams.*
postgresql.postgresqlScheme
postgresql.service.port
generatePostgresqlPasswordSecret
computeLogManager.type
computeLogManager.config.gcsComputeLogManager.bucket
computeLogManager.config.gcsComputeLogManager.bucket.env
computeLogManager.config.gcsComputeLogManager.prefix
computeLogManager.config.gcsComputeLogManager.uploadInterval
concurrency.enabled
concurrency.pools.defaultLimit
concurrency.pools.granularity
concurrency.runs.maxConcurrentRuns
concurrency.runs.tagConcurrencyLimits.*
retention.enabled
retention.sensor.purgeAfterDays
retention.sensor.purgeAfterDays.*
retention.schedule.purgeAfterDays
retention.schedule.purgeAfterDays.*
""".split()


# -- What the code reads -------------------------------------------------------------------


class RecordingEnviron(Mapping):
    """A mapping that remembers every name asked for (``get``, ``[]``, ``in``)."""

    def __init__(self, values: Mapping[str, str]):
        self.values = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self.values[name]

    def get(self, name, default=None):
        self.read.add(name)
        return self.values.get(name, default)

    def __contains__(self, name) -> bool:
        self.read.add(name)
        return name in self.values

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the settings enumerate the environment: reads cannot be told")

    def __len__(self) -> int:
        return len(self.values)


def sample(name: str) -> str:
    return SAMPLES.get(name, f"sample-{name.lower().replace('_', '-')}")


def variables_read(home: Path) -> set[str]:
    """Every variable ``load_settings`` reads: locally, then in prod with every variable seen
    so far set, until no new one appears."""
    local = RecordingEnviron({"BDT_HOME": str(home), "BDT_PII_KEY": "local-key"})
    load_settings(local)
    seen = set(local.read)
    while True:
        recording = RecordingEnviron({name: sample(name) for name in seen | {"BDT_ENV"}})
        try:
            load_settings(recording)
        except SettingsError as exc:
            raise AssertionError(f"add a valid sample to SAMPLES: {exc}") from None
        if recording.read <= seen:
            return seen
        seen |= recording.read


def variables_in_settings_source() -> set[str]:
    """The names ``core/settings.py`` passes to ``environ.get(...)`` or ``environ[...]``."""
    tree = ast.parse(Path(settings_module.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        target = None
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get" and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "environ" and node.args):
            target = node.args[0]
        elif (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
              and node.value.id == "environ"):
            target = node.slice
        if isinstance(target, ast.Constant) and isinstance(target.value, str):
            names.add(target.value)
    return names


def prod_samples(names: set[str]) -> dict[str, str]:
    return {name: sample(name) for name in names - set(LEFT_UNSET)} | {"BDT_ENV": "prod"}


def secret_variables(names: set[str]) -> set[str]:
    """The variables whose value the ``Settings`` repr hides (``field(repr=False)``)."""
    shown = repr(load_settings({name: sample(name) for name in names}))
    return {name for name in names if name != "BDT_ENV" and sample(name) not in shown}


def required_in_prod(names: set[str]) -> set[str]:
    """The variables without which prod settings do not load."""
    full = prod_samples(names)
    required = set()
    for name in full:
        try:
            load_settings({k: v for k, v in full.items() if k != name})
        except SettingsError:
            required.add(name)
    return required


@pytest.fixture(scope="module")
def read(tmp_path_factory) -> set[str]:
    return variables_read(tmp_path_factory.mktemp("home"))


# -- The files -------------------------------------------------------------------------------


@dataclass
class Dockerfile:
    instructions: list[tuple[str, str]]

    @classmethod
    def parse(cls, text: str) -> Dockerfile:
        lines, current = [], ""
        for raw in text.splitlines():
            if not current and (not raw.strip() or raw.lstrip().startswith("#")):
                continue
            if raw.rstrip().endswith("\\"):
                current += raw.rstrip()[:-1] + " "
                continue
            lines.append(current + raw)
            current = ""
        instructions = []
        for line in lines:
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
        return cls(instructions)

    def all(self, keyword: str) -> list[str]:
        return [rest for key, rest in self.instructions if key == keyword]

    def env(self) -> dict[str, str]:
        env = {}
        for rest in self.all("ENV"):
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
        return env

    def args(self) -> dict[str, str]:
        return dict(item.partition("=")[::2] for item in self.all("ARG"))

    def cmd(self) -> list[str]:
        (cmd,) = self.all("CMD")
        return json.loads(cmd)

    def workdir(self) -> PurePosixPath:
        return PurePosixPath(self.all("WORKDIR")[-1])

    def copies(self) -> dict[str, PurePosixPath]:
        """Each COPY's sources and where each lands in the image."""
        copies = {}
        for rest in self.all("COPY"):
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            raw = parts[-1]
            dest = PurePosixPath(raw)
            dest = dest if dest.is_absolute() else self.workdir() / dest
            into = raw.endswith("/") or raw == "." or len(parts) > 2
            for source in parts[:-1]:
                source = source.rstrip("/")
                copies[source] = dest / PurePosixPath(source).name if into else dest
        return copies


def load_yaml_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@dataclass
class Deployment:
    """The files as the checks see them; the tests break copies of it."""

    values: dict
    dockerfile: Dockerfile
    manifests: list[dict]
    workspace: dict
    pyproject: dict
    dockerignore: list[str] = field(default_factory=list)

    @classmethod
    def load(cls) -> Deployment:
        manifests = [doc for path in sorted(MANIFESTS.glob("*.yaml"))
                     for doc in load_yaml_documents(path)]
        ignore = (REPO / ".dockerignore").read_text().splitlines()
        return cls(values=yaml.safe_load(VALUES.read_text()),
                   dockerfile=Dockerfile.parse(DOCKERFILE.read_text()),
                   manifests=manifests,
                   workspace=yaml.safe_load((REPO / "workspace.yaml").read_text()),
                   pyproject=tomllib.loads((REPO / "pyproject.toml").read_text()),
                   dockerignore=[line.strip() for line in ignore
                                 if line.strip() and not line.startswith("#")])

    def manifest(self, kind: str, name: str) -> dict | None:
        for doc in self.manifests:
            if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
                return doc
        return None

    @property
    def code_deployment(self) -> dict:
        (deployment,) = self.values["dagster-user-deployments"]["deployments"]
        return deployment

    @property
    def run_launcher(self) -> dict:
        return self.values["runLauncher"]["config"]["k8sRunLauncher"]


@dataclass(frozen=True)
class Provided:
    value: str
    source: str  # "image", "chart", "configmap:<name>", "secret:<name>", "literal:<where>"

    @property
    def from_secret(self) -> bool:
        return self.source.startswith("secret:")


def _from_sources(dep: Deployment, config_maps: list, secrets: list, env, where: str,
                  problems: list[str]) -> dict[str, Provided]:
    """envFrom ConfigMaps and Secrets (their keys, from deploy/k8s), then ``env`` on top."""
    provided: dict[str, Provided] = {}
    for kind, refs in (("ConfigMap", config_maps), ("Secret", secrets)):
        for ref in refs or []:
            name = ref["name"] if isinstance(ref, dict) else ref
            doc = dep.manifest(kind, name)
            if doc is None:
                problems.append(f"{where}: {kind} {name} is not in deploy/k8s/")
                continue
            data = {**(doc.get("data") or {}), **(doc.get("stringData") or {})}
            for key, value in data.items():
                provided[key] = Provided(str(value), f"{kind.lower()}:{name}")
    if isinstance(env, dict):
        for key, value in env.items():
            provided[key] = Provided(str(value), f"literal:{where}")
    for item in env if isinstance(env, list) else []:
        if isinstance(item, str):  # the run launcher's envVars: NAME or NAME=value
            key, _, value = item.partition("=")
            provided[key] = Provided(value, f"literal:{where}")
        elif "valueFrom" in item:
            ref = item["valueFrom"]
            if "secretKeyRef" in ref:
                provided[item["name"]] = Provided("", f"secret:{ref['secretKeyRef']['name']}")
            else:
                name = ref.get("configMapKeyRef", {}).get("name", "?")
                provided[item["name"]] = Provided("", f"configmap:{name}")
        else:
            provided[item["name"]] = Provided(str(item.get("value", "")), f"literal:{where}")
    return provided


def pod_environment(dep: Deployment, pod: str, problems: list[str] | None = None,
                    ) -> dict[str, Provided]:
    """The environment of the code server's pod (``code``) or of a run's pod (``run``), as
    the chart builds them, later sources winning: the image, the chart's DAGSTER_HOME, then
    the deployment's (for a run only with includeConfigInLaunchedRuns), then the launcher's."""
    problems = [] if problems is None else problems
    env = {name: Provided(value, "image") for name, value in dep.dockerfile.env().items()}
    env["DAGSTER_HOME"] = Provided(
        (dep.values.get("global") or {}).get("dagsterHome") or CHART_DAGSTER_HOME, "chart")
    deployment = dep.code_deployment
    included = (deployment.get("includeConfigInLaunchedRuns") or {}).get("enabled", True)
    if pod == "code" or included:
        env |= _from_sources(dep, deployment.get("envConfigMaps"), deployment.get("envSecrets"),
                             deployment.get("env"), "user deployment", problems)
    if pod == "run":
        launcher = dep.run_launcher
        env |= _from_sources(dep, launcher.get("envConfigMaps"), launcher.get("envSecrets"),
                             launcher.get("envVars"), "run launcher", problems)
    return env


def pod_mounts(dep: Deployment, pod: str) -> list[PurePosixPath]:
    deployment = dep.code_deployment
    mounts = []
    included = (deployment.get("includeConfigInLaunchedRuns") or {}).get("enabled", True)
    if pod == "code" or included:
        mounts += deployment.get("volumeMounts") or []
    if pod == "run":
        mounts += dep.run_launcher.get("volumeMounts") or []
    return [PurePosixPath(m["mountPath"]) for m in mounts]


# -- The checks ------------------------------------------------------------------------------

CREDENTIAL_IN_URL = re.compile(r"://[^/@:\s]+:[^/@\s]+@")
PLACEHOLDER = "REPLACE_ME"


def check_variables(dep: Deployment, read: set[str]) -> list[str]:
    """Every variable read is provided to both pods (LEFT_UNSET ones never are), and nothing
    provided is read by no one."""
    problems: list[str] = []
    for pod in ("code", "run"):
        env = pod_environment(dep, pod, problems)
        for name in sorted(read - set(LEFT_UNSET) - set(env)):
            problems.append(f"{pod} pod: {name} is read by core/settings.py but not provided")
        for name in sorted(set(LEFT_UNSET) & set(env)):
            problems.append(f"{pod} pod: {name} is provided ({env[name].source}) but must stay "
                            f"unset: {LEFT_UNSET[name]}")
        for name in sorted(set(env) - read):
            if env[name].source == "image" and name.startswith(("PYTHON", "PIP_")):
                continue
            problems.append(f"{pod} pod: {name} ({env[name].source}) is read by no code")
    return problems


def check_secrets(dep: Deployment, secrets: set[str]) -> list[str]:
    """Secrets come from Kubernetes Secrets only; nothing else carries a credential; the
    example Secret holds placeholders only; no password in the chart's values."""
    problems: list[str] = []
    for pod in ("code", "run"):
        for name, provided in sorted(pod_environment(dep, pod).items()):
            if name in secrets and not provided.from_secret:
                problems.append(f"{pod} pod: {name} is a secret but comes from "
                                f"{provided.source}")
            if not provided.from_secret and CREDENTIAL_IN_URL.search(provided.value):
                problems.append(f"{pod} pod: {name} ({provided.source}) holds a password")
    for doc in dep.manifests:
        if doc.get("kind") == "Secret":
            for key, value in {**(doc.get("data") or {}), **(doc.get("stringData") or {})}.items():
                if value != PLACEHOLDER:
                    problems.append(f"Secret {doc['metadata']['name']}: {key} is not "
                                    f"{PLACEHOLDER}: real values never go in the repository")
    for key in ("postgresqlPassword",):
        if key in (dep.values.get("postgresql") or {}):
            problems.append(f"values: postgresql.{key} is set; the password comes from the "
                            f"Secret {dep.values['global']['postgresqlSecretName']}")
    if dep.values.get("generatePostgresqlPasswordSecret") is not False:
        problems.append("values: generatePostgresqlPasswordSecret must be false (the Cloud SQL "
                        "password Secret is created by hand)")
    return problems


def check_file_variables(dep: Deployment) -> list[str]:
    """An absolute path given by a ConfigMap or Secret lies in a volume mounted in the pod."""
    problems = []
    for pod in ("code", "run"):
        mounts = pod_mounts(dep, pod)
        for name, provided in sorted(pod_environment(dep, pod).items()):
            if provided.source in ("image", "chart") or not provided.value.startswith("/"):
                continue
            path = PurePosixPath(provided.value)
            if not any(path.is_relative_to(m) and path != m for m in mounts):
                problems.append(f"{pod} pod: {name}={path} is in no mounted volume")
    return problems


def check_chart_keys(values: dict) -> list[str]:
    allowed = set(CHART_KEYS)
    prefixes = {key[:i] for key in allowed for i in range(len(key))
                if key[i] in ".["} | allowed

    def walk(node, path: str) -> Iterator[str]:
        if path and path + ".*" in allowed:
            return
        if isinstance(node, dict):
            for key, value in node.items():
                child = f"{path}.{key}" if path else key
                if child not in prefixes and child + ".*" not in allowed:
                    yield f"values: {child} is not a key of Dagster's chart (CHART_KEYS)"
                else:
                    yield from walk(value, child)
        elif isinstance(node, list) and path + "[]" in prefixes:
            for item in node:
                yield from walk(item, path + "[]")

    return list(walk(values, ""))


def _grpc_target(args: list[str]) -> tuple[str | None, int | None]:
    module = args[args.index("-m") + 1] if "-m" in args else None
    port = int(args[args.index("-p") + 1]) if "-p" in args else None
    return module, port


def check_code_server(dep: Deployment) -> list[str]:
    """The image serves the workspace's module on the port the chart's deployment names."""
    problems = []
    (location,) = dep.workspace["load_from"]
    module = location["python_module"]["module_name"]
    if dep.pyproject["tool"]["dagster"]["module_name"] != module:
        problems.append("pyproject [tool.dagster] and workspace.yaml name different modules")
    cmd = dep.dockerfile.cmd()
    if cmd[:3] != ["dagster", "api", "grpc"]:
        problems.append(f"Dockerfile CMD is not `dagster api grpc ...`: {cmd}")
    if dep.dockerfile.all("ENTRYPOINT"):
        problems.append("Dockerfile has an ENTRYPOINT: the chart's args would be passed to it")
    cmd_module, cmd_port = _grpc_target(cmd)
    deployment = dep.code_deployment
    values_module, _ = _grpc_target(deployment["dagsterApiGrpcArgs"])
    if cmd_module != module or values_module != module:
        problems.append(f"the workspace serves {module}, the Dockerfile {cmd_module}, the "
                        f"values {values_module}")
    if "-h" not in cmd or cmd[cmd.index("-h") + 1] != "0.0.0.0":
        problems.append("Dockerfile CMD does not listen on 0.0.0.0")
    if cmd_port != deployment["port"]:
        problems.append(f"Dockerfile CMD port {cmd_port} != the values' port "
                        f"{deployment['port']}")
    exposed = {int(p.split("/")[0]) for rest in dep.dockerfile.all("EXPOSE") for p in rest.split()}
    if deployment["port"] not in exposed:
        problems.append(f"Dockerfile does not EXPOSE {deployment['port']}")
    return problems


def paths_beside_the_package() -> set[str]:
    """What the code resolves outside its package, beside it in the repository:
    ``Path(__file__).resolve().parents[N] / "name"`` reaching the repository root."""
    names = set()
    pattern = re.compile(r"Path\(__file__\)\.resolve\(\)\.parents\[(\d)\]\s*/\s*\"([^\"]+)\"")
    for path in (REPO / "bdt_platform").rglob("*.py"):
        root = len(path.relative_to(REPO).parts) - 1  # parents[root] is the repository
        for up, name in pattern.findall(path.read_text()):
            if int(up) == root:
                names.add(name)
    return names


def check_image_contents(dep: Deployment) -> list[str]:
    """The image holds the package, what it reads beside the package (dbt_project/), and
    what pip needs to install it, at the paths the code expects; .dockerignore keeps them."""
    problems = []
    workdir = dep.dockerfile.workdir()
    copied = dep.dockerfile.copies()
    project = dep.pyproject["project"]
    packages = dep.pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    needed = {"pyproject.toml", project["readme"]} | {p.rstrip("*") for p in packages}
    needed |= paths_beside_the_package()
    for name in sorted(needed):
        if name not in copied:
            problems.append(f"Dockerfile does not COPY {name}")
        elif copied[name] != workdir / name:
            problems.append(f"Dockerfile copies {name} to {copied[name]}, not {workdir / name} "
                            "(the code finds it beside the package)")
        if any(fnmatch.fnmatch(name, pattern) for pattern in dep.dockerignore):
            problems.append(f".dockerignore leaves {name} out of the build context")
    runs = " ".join(dep.dockerfile.all("RUN"))
    if not re.search(r"pip install [^&]*-e \.", runs):
        problems.append("Dockerfile does not install the package in place (pip install -e .): "
                        "installed into site-packages it would not find dbt_project/")
    if "prepare_manifest" not in runs:
        problems.append("Dockerfile does not parse the dbt project at build time")
    base = dep.dockerfile.all("FROM")[0]
    match = re.match(r"python:(\d+)\.(\d+)", base)
    low, high = re.findall(r"(\d+)\.(\d+)", project["requires-python"])
    if not match or not (tuple(map(int, low)) <= tuple(map(int, match.groups()))
                         < tuple(map(int, high))):
        problems.append(f"base image {base} is not a Python within {project['requires-python']}")
    return problems


def check_pins(dep: Deployment) -> list[str]:
    """The image's extras exist, dagster-k8s (which the chart's K8sRunLauncher needs in every
    process that loads the instance) is among them, and its pin matches the other libraries'."""
    problems = []
    project = dep.pyproject["project"]
    extras = [e for e in dep.dockerfile.args().get("BDT_EXTRAS", "").split(",") if e]
    for extra in extras:
        if extra not in project.get("optional-dependencies", {}):
            problems.append(f"Dockerfile BDT_EXTRAS names {extra}, not an extra of pyproject")
    installed = project["dependencies"] + [d for e in extras
                                           for d in project.get("optional-dependencies", {})
                                           .get(e, [])]
    pins = dict(re.match(r"([A-Za-z0-9_.-]+)==(\S+)", d).groups() for d in installed
                if "==" in d)
    if dep.values["runLauncher"]["type"] == "K8sRunLauncher" and "dagster-k8s" not in pins:
        problems.append("the image does not install dagster-k8s, which the K8sRunLauncher needs")
    library_versions = {v for k, v in pins.items() if k.startswith("dagster-")
                        and k not in ("dagster-webserver", "dagster-graphql", "dagster-pipes")}
    if len(library_versions) > 1:
        problems.append(f"the dagster libraries are pinned to different versions: "
                        f"{sorted(library_versions)}")
    return problems


def check_one_image(values: dict) -> list[str]:
    def name(image):
        return f"{image['repository']}:{image.get('tag')}"

    images = {"code server": name(values["dagster-user-deployments"]["deployments"][0]["image"]),
              "webserver": name(values["dagsterWebserver"]["image"]),
              "daemon": name(values["dagsterDaemon"]["image"])}
    if len(set(images.values())) > 1:
        return [f"the pods use different images: {images}"]
    return []


def check_all(dep: Deployment, read: set[str]) -> list[str]:
    return (check_variables(dep, read) + check_secrets(dep, secret_variables(read))
            + check_file_variables(dep) + check_chart_keys(dep.values)
            + check_code_server(dep) + check_image_contents(dep) + check_pins(dep)
            + check_one_image(dep.values))


# -- The tests -------------------------------------------------------------------------------


def test_the_recorded_reads_are_all_that_settings_reads(read):
    """Nothing in ``core/settings.py`` is read on a path the recording did not take, and the
    recording saw no name that the file does not spell out."""
    assert read == variables_in_settings_source()
    assert {"BDT_ENV", "BDT_PII_KEY", "BDT_GCS_BUCKET", "BDT_DAGSTER_PG_URL"} <= read


def test_secrets_and_required_variables_come_from_the_code(read):
    """The two sets the checks use, as the code defines them today (a new secret field or a
    new required variable shows up here first)."""
    assert secret_variables(read) == {"BDT_PII_KEY", "BDT_DAGSTER_PG_URL",
                                      "BDT_ALERT_WEBHOOK_URL", "BDT_SITE_SECRET",
                                      "BDT_CASEMGMT_URL", "BDT_SMTP_PASSWORD"}
    assert required_in_prod(read) == {"BDT_PII_KEY", "BDT_GCP_PROJECT", "BDT_GCS_BUCKET"}


def test_the_files_pass_every_check(read):
    assert check_all(Deployment.load(), read) == []


def test_each_pod_environment_loads_as_prod(read):
    """What the chart gives the code server and a run (secrets as samples) makes valid prod
    settings: the lake in the bucket, BigQuery, the SFTP inbox, the instance in PostgreSQL."""
    dep = Deployment.load()
    for pod in ("code", "run"):
        env = {name: sample(name) if provided.from_secret else provided.value
               for name, provided in pod_environment(dep, pod).items()}
        for name in required_in_prod(read):
            assert env.get(name) and env[name] != PLACEHOLDER, (pod, name)
        settings = load_settings(env)
        config_map = dep.manifest("ConfigMap", "bdt-platform-env")["data"]
        assert settings.env == "prod" and settings.dbt_target == "bigquery"
        assert settings.lake == f"gs://{config_map['BDT_GCS_BUCKET']}/lake"
        assert settings.inbox.startswith("sftp://") and settings.sftp_key
        assert settings.dagster_pg_url and settings.alert_webhook_url
        assert str(settings.home) == dep.dockerfile.env()["BDT_HOME"]
        assert settings.storage_emulator_host is None and settings.bigquery_emulator_host is None


def test_the_compute_log_bucket_is_the_lake_bucket_in_every_dagster_pod():
    """The GCS compute-log manager reads its bucket from BDT_GCS_BUCKET in the webserver, the
    daemon and the runs' pods."""
    dep = Deployment.load()
    gcs = dep.values["computeLogManager"]["config"]["gcsComputeLogManager"]
    variable = gcs["bucket"]["env"]
    assert variable in pod_environment(dep, "run")
    for component in ("dagsterWebserver", "dagsterDaemon"):
        names = {ref["name"] for ref in dep.values[component]["envConfigMaps"]}
        keys = {k for n in names for k in dep.manifest("ConfigMap", n)["data"]}
        assert variable in keys, component


def test_the_dockerfile_installs_exactly_the_pins(tmp_path):
    """The Dockerfile's requirements step, run here on pyproject.toml: the dependencies and the
    extras' pins, nothing else."""
    dep = Deployment.load()
    (step,) = [run for run in dep.dockerfile.all("RUN") if "/tmp/requirements.txt" in run]
    command = step.split(">", 1)[0]
    (tmp_path / "pyproject.toml").write_bytes((REPO / "pyproject.toml").read_bytes())
    env = {**os.environ, **dep.dockerfile.args()}
    out = subprocess.run(["sh", "-c", command.replace("python ", f"{sys.executable} ", 1)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    project = dep.pyproject["project"]
    extras = dep.dockerfile.args()["BDT_EXTRAS"].split(",")
    assert out.stdout.split("\n")[:-1] == project["dependencies"] + [
        d for e in extras for d in project["optional-dependencies"][e]]


def test_what_dbt_reads_is_exported_by_bdt(read, monkeypatch, tmp_path):
    """Every ``env_var`` of the dbt project is a variable bdt sets for dbt's processes (from
    the settings, in ``build_resources``, and per run, in ``partition_env``), so the cluster
    needs none of them."""
    from bdt_platform.core.resources import build_resources
    from bdt_platform.warehouse.assets import dbt_vars
    from bdt_platform.warehouse.project import BundledDbtCliResource

    text = "\n".join(p.read_text() for p in (REPO / "dbt_project").rglob("*")
                     if p.suffix in (".sql", ".yml") and "target" not in p.parts)
    literal = set(re.findall(r"env_var\(\s*'([A-Z0-9_]+)'\s*[,)]", text))
    prefixed = set(re.findall(r"env_var\(\s*'([A-Z0-9_]+)'\s*~", text))
    before = dict(os.environ)
    try:
        for name in list(os.environ):
            if name.startswith(("BDT_", "DAGSTER_")):
                monkeypatch.delenv(name)
        settings = load_settings(prod_samples(read) | {"BDT_HOME": str(tmp_path)})
        build_resources(settings, dbt=False)
        exported = set(os.environ) - set(before)
        exported |= {n for n in os.environ if n.startswith("BDT_")}
        # A forced build's run also asks dim_person to compute everyone (`recompute_people`).
        with BundledDbtCliResource.partition_env({**dbt_vars(["2024-01-01|PA"]),
                                                  "recompute_people": "true"}):
            per_run = {n for n in os.environ if n.startswith("BDT_DBT_")}
    finally:
        os.environ.clear()
        os.environ.update(before)
    assert {"BDT_DBT_TARGET", "BDT_GCP_PROJECT", "BDT_WAREHOUSE_PATH"} <= literal
    assert literal - exported - per_run == set()
    assert prefixed and all(any(n.startswith(p) for n in per_run) for p in prefixed)


def test_docs_name_the_files_and_the_chart_version():
    dep = Deployment.load()
    docs = DOCS.read_text()
    dagster = next(d for d in dep.pyproject["project"]["dependencies"]
                   if d.startswith("dagster=="))
    assert f"--version {dagster.split('==')[1]}" in docs
    for needed in ("deploy/helm/values.yaml", "Dockerfile", "dagster-postgresql-secret",
                   "bdt-platform-sftp", "bdt-platform-partners", "bdt-platform-env",
                   "bdt-platform-secrets", "run_retries", "run_monitoring", "concurrency",
                   "runRetries", "runMonitoring", "iam.gke.io/gcp-service-account"):
        assert needed in docs, needed
    for manifest in MANIFESTS.glob("*.yaml"):
        assert f"deploy/k8s/{manifest.name}" in docs, manifest.name
    assert "deploy-gcp.md" in (REPO / "docs" / "operations.md").read_text()


# -- The checks fail when the files are wrong -----------------------------------------------


def _broken(change) -> Deployment:
    dep = copy.deepcopy(Deployment.load())
    change(dep)
    return dep


def test_a_variable_left_out_is_found(read):
    def drop_pii_key(dep):
        dep.manifest("Secret", "bdt-platform-secrets")["stringData"].pop("BDT_PII_KEY")

    # Only what the change broke (a variable the files lack already is the other test's).
    baseline = set(check_variables(Deployment.load(), read))
    problems = set(check_variables(_broken(drop_pii_key), read)) - baseline
    assert problems == {f"{pod} pod: BDT_PII_KEY is read by core/settings.py but not provided"
                        for pod in ("code", "run")}

    def no_secrets_in_runs(dep):
        dep.code_deployment["includeConfigInLaunchedRuns"]["enabled"] = False
        dep.run_launcher["envSecrets"] = []

    problems = set(check_variables(_broken(no_secrets_in_runs), read)) - baseline
    assert "run pod: BDT_DAGSTER_PG_URL is read by core/settings.py but not provided" in problems
    assert not any(p.startswith("code pod") for p in problems)


def test_an_emulator_or_unread_variable_is_found(read):
    def add(dep):
        data = dep.manifest("ConfigMap", "bdt-platform-env")["data"]
        data["STORAGE_EMULATOR_HOST"] = "http://gcs:9023"
        data["BDT_NO_SUCH_SETTING"] = "1"

    problems = check_variables(_broken(add), read)
    assert any("STORAGE_EMULATOR_HOST is provided" in p for p in problems)
    assert any("BDT_NO_SUCH_SETTING (configmap:bdt-platform-env) is read by no code" in p
               for p in problems)


def test_a_secret_outside_a_kubernetes_secret_is_found(read):
    def move_key(dep):
        value = dep.manifest("Secret", "bdt-platform-secrets")["stringData"].pop("BDT_PII_KEY")
        dep.manifest("ConfigMap", "bdt-platform-env")["data"]["BDT_PII_KEY"] = value

    problems = check_secrets(_broken(move_key), secret_variables(read))
    assert "code pod: BDT_PII_KEY is a secret but comes from configmap:bdt-platform-env" in problems

    def password_in_env(dep):
        dep.code_deployment["env"] = [{"name": "BDT_CASEMGMT_URL",
                                       "value": "postgresql://u:hunter2@db/cm"}]
        dep.manifest("Secret", "bdt-platform-secrets")["stringData"]["BDT_PII_KEY"] = "0123abcd"
        dep.values["postgresql"]["postgresqlPassword"] = "hunter2"

    problems = check_secrets(_broken(password_in_env), secret_variables(read))
    assert "code pod: BDT_CASEMGMT_URL (literal:user deployment) holds a password" in problems
    assert any("BDT_PII_KEY is not REPLACE_ME" in p for p in problems)
    assert any("postgresql.postgresqlPassword is set" in p for p in problems)


def test_a_file_outside_the_mounts_is_found():
    def unmount(dep):
        dep.code_deployment["volumeMounts"] = [m for m in dep.code_deployment["volumeMounts"]
                                               if m["name"] != "sftp"]

    problems = check_file_variables(_broken(unmount))
    assert "code pod: BDT_SFTP_KEY=/etc/bdt/sftp/id_ed25519 is in no mounted volume" in problems


def test_a_key_the_chart_does_not_know_is_found():
    def typo(dep):
        dep.code_deployment["envSecret"] = [{"name": "bdt-platform-secrets"}]
        dep.values["dagsterDaemon"]["runRetries"]["max_retries"] = 1

    assert check_chart_keys(_broken(typo).values) == [
        "values: dagsterDaemon.runRetries.max_retries is not a key of Dagster's chart "
        "(CHART_KEYS)",
        "values: dagster-user-deployments.deployments[].envSecret is not a key of Dagster's "
        "chart (CHART_KEYS)"]


def test_a_wrong_port_module_or_missing_copy_is_found():
    def wrong(dep):
        dep.code_deployment["port"] = 3030
        dep.code_deployment["dagsterApiGrpcArgs"] = ["-m", "bdt_platform.defs"]
        dep.dockerfile.instructions = [(k, r) for k, r in dep.dockerfile.instructions
                                       if not (k == "COPY" and "dbt_project" in r)]
        dep.dockerignore.append("README.md")

    broken = _broken(wrong)
    problems = check_code_server(broken)
    assert "Dockerfile CMD port 4000 != the values' port 3030" in problems
    assert any("the values bdt_platform.defs" in p for p in problems)
    problems = check_image_contents(broken)
    assert "Dockerfile does not COPY dbt_project" in problems
    assert ".dockerignore leaves README.md out of the build context" in problems


def test_a_missing_run_launcher_library_is_found():
    def no_extra(dep):
        dep.dockerfile.instructions = [(k, "BDT_EXTRAS=" if k == "ARG" else r)
                                       for k, r in dep.dockerfile.instructions]

    assert check_pins(_broken(no_extra)) == [
        "the image does not install dagster-k8s, which the K8sRunLauncher needs"]

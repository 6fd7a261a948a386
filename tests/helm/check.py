"""Lint, render and validate deploy/helm/sluice for each of its values files, with Helm v4 itself
(helm-python-sdk's libhelm) and no cluster.

    python3 tests/helm/check.py [--pipelines-out DIR]

For the chart's default values and each deploy/helm/sluice/ci/*-values.yaml:
- `helm lint --strict`: no warning or error;
- render (`helm template`) and validate every manifest: core kinds against the Kubernetes
  schemas (kubernetes-validate, strict: unknown fields are errors), ScaledObject and
  ServiceMonitor against their CRDs' schemas (tests/helm/crds/);
- check what the chart promises: non-root, read-only root filesystem, no privilege escalation,
  every capability dropped, probes on /healthz and /readyz, a grace period longer than the
  pipelines' drain, the pipelines mounted from a ConfigMap, the image's compile cache copied into
  the cache volume, KEDA owning the replica count when on.
Values that must be refused (a typo, KEDA without a trigger) are refused.
With --pipelines-out, the default values' pipeline files are written there, for `sluice validate`.
Prints one line per values file and per refusal; exits 1 on the first failure, with why.
scripts/helm-tools.sh installs helm-python-sdk, kubernetes-validate and PyYAML.
"""

import json
import pathlib
import sys

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/sluice"
CRDS = ROOT / "tests/helm/crds"
KUBERNETES = "1.33.0"


class Problem(Exception):
    """What is wrong with the chart (or with values that must be refused)."""


def fail(why):
    raise Problem(why)


def crd_schemas():
    schemas = {}
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def validate(doc, schemas, where):
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in schemas:
        errors = sorted(jsonschema.Draft7Validator(schemas[key]).iter_errors(doc), key=str)
        if errors:
            fail(f"{where}: {key[1]}: " + "; ".join(e.message for e in errors[:5]))
        return
    try:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as e:
        fail(f"{where}: {key[1]} {doc['metadata']['name']}: {e.message} at {list(e.path)}")


def render(values, where):
    report = helm.lint(str(CHART), values, strict=True, namespace="prod")
    problems = [m for m in report.get("messages") or [] if m["severity"] >= 2]
    if problems or report.get("errors"):
        fail(f"{where}: helm lint: {problems or report['errors']}")
    chart = helm.Chart.load(str(CHART))
    rendered = chart.render(values, name="orders", namespace="prod", is_install=True)
    docs = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def check_promises(docs, values, where):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    (deployment,) = by_kind["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    sc, psc = container["securityContext"], pod["securityContext"]
    if not (psc.get("runAsNonRoot") and psc.get("runAsUser", 0) != 0):
        fail(f"{where}: the pod may run as root: {psc}")
    if not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation") is not False:
        fail(f"{where}: root filesystem writable or privilege escalation allowed: {sc}")
    if sc.get("capabilities", {}).get("drop") != ["ALL"]:
        fail(f"{where}: capabilities not all dropped: {sc}")
    if container["readinessProbe"]["httpGet"]["path"] != "/readyz":
        fail(f"{where}: readiness is not /readyz")
    if container["livenessProbe"]["httpGet"]["path"] != "/healthz":
        fail(f"{where}: liveness is not /healthz")
    # A pipeline's shutdown at its slowest: the drain, then each sink's close, the dead-letter
    # sink's and the source's, each up to shutdown_deadline_ms (30 s by default), in turn.
    grace = pod["terminationGracePeriodSeconds"]
    for configmap in by_kind.get("ConfigMap", []):
        for file, text in configmap["data"].items():
            p = yaml.safe_load(text)
            deadline = p.get("shutdown_deadline_ms", 30000) / 1000
            slowest = (3 + len(p.get("sinks", {}))) * deadline
            if grace <= slowest:
                fail(f"{where}: grace period {grace} s, but {file} may take {slowest:.0f} s to stop")
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for path in ["/etc/sluice/pipelines", "/var/cache/sluice", "/tmp"]:
        if path not in mounts:
            fail(f"{where}: nothing mounted at {path}")
    volumes = {v["name"]: v for v in pod["volumes"]}
    for name, volume in volumes.items():
        if len(volume) != 2:
            fail(f"{where}: volume {name} has {len(volume) - 1} sources: {volume}")
    env = {e["name"]: e for e in container["env"]}
    cache_dir = env["SLUICE_CACHE_DIR"]["value"]
    if not cache_dir.startswith(mounts["/var/cache/sluice"]["mountPath"] + "/"):
        fail(f"{where}: SLUICE_CACHE_DIR {cache_dir} is not a subdirectory of the cache volume")
    configmap = volumes["pipelines"]["configMap"]["name"]
    existing = values.get("existingPipelinesConfigMap")
    if existing:
        if configmap != existing or "ConfigMap" in by_kind:
            fail(f"{where}: the existing ConfigMap {existing} is not the one mounted")
    elif [c["metadata"]["name"] for c in by_kind.get("ConfigMap", [])] != [configmap]:
        fail(f"{where}: the mounted ConfigMap {configmap} is not rendered")
    seed = values.get("cache", {}).get("seedFromImage", True)
    inits = {c["name"]: c for c in pod.get("initContainers", [])}
    if seed != ("seed-cache" in inits):
        fail(f"{where}: cache.seedFromImage is {seed}, init containers {list(inits)}")
    if seed:
        init = inits["seed-cache"]
        target = "/seed" + cache_dir.removeprefix("/var/cache/sluice")
        if init["volumeMounts"] != [{"name": "cache", "mountPath": "/seed"}] or (
            f"cp -a /var/cache/sluice/. {target}/" not in " ".join(init["command"])
        ):
            fail(f"{where}: the image's cache is not copied to SLUICE_CACHE_DIR: {init}")
    keda = values.get("autoscaling", {}).get("keda", {}).get("enabled", False)
    if keda:
        (scaled,) = by_kind["ScaledObject"]
        if "replicas" in deployment["spec"]:
            fail(f"{where}: the Deployment sets replicas while KEDA scales it")
        if scaled["spec"]["scaleTargetRef"]["name"] != deployment["metadata"]["name"]:
            fail(f"{where}: the ScaledObject scales another Deployment")
    elif "ScaledObject" in by_kind:
        fail(f"{where}: a ScaledObject without autoscaling.keda.enabled")
    token = values.get("admin", {}).get("tokenSecret", {}).get("name")
    if token and env["SLUICE_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] != token:
        fail(f"{where}: the admin token does not come from the Secret {token}")
    return by_kind


def refused(values, what, why):
    """`values` must be refused, and for `why` (a piece of the error), not another reason."""
    try:
        render(values, what)
    except (helm.HelmError, Problem) as e:
        if why not in str(e):
            fail(f"values with {what} were refused, but not for {why!r}: {e}")
        print(f"helm check: refused, as it must be: {what} ({why})")
        return
    fail(f"values with {what} were accepted")


def main():
    out = None
    if len(sys.argv) == 3 and sys.argv[1] == "--pipelines-out":
        out = pathlib.Path(sys.argv[2])
    elif len(sys.argv) != 1:
        fail("usage: check.py [--pipelines-out DIR]")
    schemas = crd_schemas()
    cases = [("values.yaml (defaults)", {})]
    for path in sorted((CHART / "ci").glob("*-values.yaml")):
        cases.append((path.name, yaml.safe_load(path.read_text())))
    for where, values in cases:
        docs = render(values, where)
        for doc in docs:
            validate(doc, schemas, where)
        kinds = check_promises(docs, values, where)
        summary = ", ".join(f"{k} {len(v)}" for k, v in sorted(kinds.items()))
        print(f"helm check: {where}: lint clean, {len(docs)} manifests valid ({summary})")
        if out and not values:
            (configmap,) = kinds["ConfigMap"]
            out.mkdir(parents=True, exist_ok=True)
            for name, text in configmap["data"].items():
                (out / name).write_text(text)
    refused({"replicaCount": 2, "replicas": 3}, "an unknown key", "'replicas' not allowed")
    refused({"autoscaling": {"keda": {"enabled": True}}}, "KEDA on and no trigger", "at least one trigger")
    refused({"terminationGracePeriodSeconds": 10}, "a grace period shorter than a drain", "minimum")
    refused(
        {"plugins": {"volume": {"emptyDir": {}}, "initContainer": {"image": "x"}}},
        "two sources of plugins",
        "choose one",
    )
    refused(
        {"cache": {"volume": {"emptyDir": {}, "persistentVolumeClaim": {"claimName": "c"}}}},
        "a cache volume with two sources",
        "maxProperties",
    )


if __name__ == "__main__":
    try:
        main()
    except Problem as e:
        print(f"helm check: FAILED: {e}", file=sys.stderr)
        sys.exit(1)

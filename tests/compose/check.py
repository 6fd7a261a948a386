"""Checks deploy/compose/compose.yaml without pulling its images: podman-compose (1.6, from
PyPI, installed by scripts/container-tools.sh) must load and normalise it (`config`), and what it
names must exist: every file it mounts, the pipeline file the `sluice` service runs (as the
image lays it out), the Prometheus target and the Grafana data source (its own services). The
`sluice` service must run as the Helm chart does (read-only root, no capabilities, no privilege
escalation, a grace period above the pipeline's slowest shutdown, computed from the pipeline file).

Usage: python3 -S tests/compose/check.py  (PYTHONPATH: the podman-compose install)
Prints the pipeline file the sluice service runs, for `sluice validate`, on its last line.
"""

import os
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPOSE_DIR = os.path.join(REPO, "deploy", "compose")


def fail(message):
    print(f"compose file: {message}", file=sys.stderr)
    sys.exit(1)


def seconds(duration):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if str(duration).endswith(unit):
            return float(str(duration)[: -len(unit)]) * units[unit]
    return float(duration)


normalised = subprocess.run(
    [sys.executable, "-S", "-m", "podman_compose", "-f", "compose.yaml", "config"],
    cwd=COMPOSE_DIR,
    capture_output=True,
    text=True,
)
if normalised.returncode != 0:
    fail(f"podman-compose config refused it:\n{normalised.stderr}")
compose = yaml.safe_load(normalised.stdout)
services = compose["services"]
if set(services) != {"rabbitmq", "sluice", "prometheus", "grafana"}:
    fail(f"services {sorted(services)}")

for name, service in services.items():
    for volume in service.get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith("."):
            if not os.path.exists(os.path.join(COMPOSE_DIR, source)):
                fail(f"{name} mounts {source}, which does not exist")

sluice = services["sluice"]
if sluice.get("read_only") is not True or sluice.get("cap_drop") != ["ALL"]:
    fail("the sluice service must have a read-only root and drop every capability")
if "no-new-privileges:true" not in sluice.get("security_opt", []):
    fail("the sluice service must set no-new-privileges")
command = sluice["command"]
if command[0] != "run" or not command[1].startswith("/etc/sluice/pipelines/"):
    fail(f"the sluice service runs {command}, not a pipeline of the image")
pipeline = os.path.join(REPO, "pipelines", command[1][len("/etc/sluice/pipelines/"):])
if not os.path.isfile(pipeline):
    fail(f"{command[1]} is not in the image (no {pipeline})")
# The chart's rule: above the pipeline's slowest shutdown, the drain and then each sink's close
# (its outputs' and the dead-letter sink's) and the source's, each up to shutdown_deadline_ms
# (30 s by default): (3 + outputs) x deadline.
with open(pipeline) as f:
    spec = yaml.safe_load(f)
slowest = (3 + len(spec["sinks"])) * spec.get("shutdown_deadline_ms", 30000) / 1000
if seconds(sluice.get("stop_grace_period", "10s")) <= slowest:
    fail(f"stop_grace_period {sluice.get('stop_grace_period')} is not above {slowest:g} s")
if "rabbitmq" not in sluice["environment"].get("AMQP_URL", ""):
    fail("AMQP_URL must name the rabbitmq service")

with open(os.path.join(COMPOSE_DIR, "prometheus.yml")) as f:
    prometheus = yaml.safe_load(f)
names = [n for job in prometheus["scrape_configs"] for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
if names != ["sluice"]:
    fail(f"Prometheus scrapes {names}, not the sluice service")
with open(os.path.join(COMPOSE_DIR, "grafana/provisioning/datasources/prometheus.yaml")) as f:
    source = yaml.safe_load(f)["datasources"][0]
if source["url"] != "http://prometheus:9090" or not source.get("isDefault"):
    fail(f"Grafana's default data source is {source['url']}")
dashboards = [f for f in os.listdir(os.path.join(REPO, "deploy", "grafana")) if f.endswith(".json")]
if len(dashboards) < 2:
    fail(f"dashboards to preload: {dashboards}")

print(f"compose file valid: {len(services)} services, {len(dashboards)} dashboards preloaded")
print(pipeline)

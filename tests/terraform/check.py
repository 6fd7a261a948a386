"""Checks the Terraform modules in deploy/terraform against what `sluice plan` says the example
pipelines need, with no `terraform` or `tofu` binary (none can be installed on the test machine,
and `validate` would need the providers from their registry): each module is parsed with
python-hcl2, and for each broker family

- the provider is named by source and pinned to a version range;
- `sluice plan --terraform <family>` on pipelines/ and pipelines/brokers/ gives only variables the
  module declares, with only the attributes their object types declare, and every variable the
  module requires without a default (except those the user gives: the storage account);
- every variable the plan fills is what a resource's `for_each` iterates (directly or through a
  local), and the resource types are the ones that declare that family's things;
- the SQS module's redrive: every dead-letter queue a queue names is itself in the plan.

Usage: python3 -S tests/terraform/check.py <sluice binary>  (PYTHONPATH: python-hcl2)
"""

import json
import os
import re
import subprocess
import sys

import hcl2

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE = sys.argv[1]

# Per family: the resource types its module must declare, and the variables the user gives.
FAMILIES = {
    "kafka": ({"kafka_topic"}, set()),
    "rabbitmq": ({"rabbitmq_queue", "rabbitmq_exchange", "rabbitmq_binding"}, set()),
    "sqs": ({"aws_sqs_queue", "aws_cloudwatch_metric_alarm"}, set()),
    "azure": ({"azurerm_storage_queue"}, {"storage_account_name"}),
}

failures = []


def fail(family, message):
    failures.append(f"{family}: {message}")


def unquote(name):
    return name.strip('"')


def object_attributes(type_expr):
    """The attribute names of the object type inside a variable's type, if any."""
    m = re.search(r"object\(\{(.*)\}\)", type_expr)
    if not m:
        return None
    return set(re.findall(r"(\w+)\s*=", m.group(1)))


for family, (resource_types, user_given) in FAMILIES.items():
    path = os.path.join(REPO, "deploy", "terraform", family, "main.tf")
    with open(path) as f:
        module = hcl2.load(f)

    providers = module["terraform"][0]["required_providers"][0]
    for name, provider in providers.items():
        if name.startswith("__"):
            continue
        if "/" not in provider.get("source", "") or not provider.get("version"):
            fail(family, f"provider {name} must have a source and a version range")

    variables = {}
    for block in module.get("variable", []):
        for name, body in block.items():
            variables[unquote(name)] = body

    resources = {}
    for block in module.get("resource", []):
        for rtype, named in block.items():
            for rname, body in named.items():
                resources[f"{unquote(rtype)}.{unquote(rname)}"] = body
    declared_types = {r.split(".")[0] for r in resources}
    if declared_types != resource_types:
        fail(family, f"declares {sorted(declared_types)}, expected {sorted(resource_types)}")
    locals_ = {k: v for block in module.get("locals", []) for k, v in block.items()}

    plan = subprocess.run(
        [SLUICE, "plan", "--terraform", family, os.path.join(REPO, "pipelines"),
         os.path.join(REPO, "pipelines", "brokers")],
        capture_output=True, text=True)
    if plan.returncode != 0:
        fail(family, f"sluice plan failed: {plan.stderr}")
        continue
    tfvars = json.loads(plan.stdout)

    for name, value in tfvars.items():
        if name not in variables:
            fail(family, f"the plan gives {name}, which the module does not declare")
            continue
        attributes = object_attributes(variables[name].get("type", ""))
        if attributes is not None and isinstance(value, dict):
            for key, settings in value.items():
                extra = set(settings) - attributes
                if extra:
                    fail(family, f"{name}[{key}] has {sorted(extra)}, not in the module's type")
        # What iterates over it: a for_each naming the variable, or a local that does.
        users = [l for l, expr in locals_.items() if f"var.{name}" in str(expr)]
        iterated = any(
            f"var.{name}" in str(body.get("for_each", ""))
            or any(f"local.{l}" in str(body.get("for_each", "")) for l in users)
            for body in resources.values())
        if not iterated:
            fail(family, f"no resource's for_each iterates over var.{name}")
    for name, body in variables.items():
        if "default" not in body and name not in tfvars and name not in user_given:
            fail(family, f"variable {name} has no default and the plan does not give it")

    if family == "sqs":
        queues = tfvars["queues"]
        for name, q in queues.items():
            dead = q.get("dead_letter_queue")
            if dead is not None and dead not in queues:
                fail(family, f"{name} redrives to {dead}, which is not a queue of the plan")
        redrives = {n: q["dead_letter_queue"] for n, q in queues.items() if q.get("dead_letter_queue")}
        summary = f"{len(queues)} queues, redrive {redrives}"
    else:
        summary = ", ".join(f"{len(v)} {k}" for k, v in tfvars.items())
    print(f"{family}: module parsed; the example pipelines need {summary}")

if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
print(f"terraform modules valid for the example pipelines: {len(FAMILIES)} families")

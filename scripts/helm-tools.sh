#!/usr/bin/env bash
# What tests/helm/check.py needs to lint, render and validate the Helm chart with no cluster and
# no `helm` binary: helm-python-sdk (Helm v4 itself, as a native library), kubernetes-validate
# (the Kubernetes API schemas) and PyYAML; and what tests/terraform/check.py needs to parse the
# Terraform modules with no `terraform` or `tofu` binary (none can be installed here):
# python-hcl2. Installed with pip into /var/tmp/sluice-tools/helm,
# outside any system or user site-packages, at pinned versions. Idempotent: when all are there
# at those versions this is a quick no-op.
set -euo pipefail

DIR=${SLUICE_TOOLS:-/var/tmp/sluice-tools}/helm
HELM_PYTHON_SDK=0.2.2
KUBERNETES_VALIDATE=1.37.0
PYYAML=6.0.2
PYTHON_HCL2=8.1.4

# Tests run in parallel: one install at a time.
mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
flock 9

# -S: only what is in $DIR counts, never a copy some other site-packages holds.
if PYTHONPATH=$DIR python3 -S -c "
import sys, helm_python, kubernetes_validate, yaml, hcl2
from importlib.metadata import version
want = ('$HELM_PYTHON_SDK', '$KUBERNETES_VALIDATE', '$PYYAML', '$PYTHON_HCL2')
have = (version('helm-python-sdk'), version('kubernetes-validate'), yaml.__version__, version('python-hcl2'))
sys.exit(0 if have == want else 1)
" 2>/dev/null; then
  exit 0
fi
echo "tools: installing helm-python-sdk $HELM_PYTHON_SDK, kubernetes-validate $KUBERNETES_VALIDATE, PyYAML $PYYAML and python-hcl2 $PYTHON_HCL2 (pip) into $DIR"
rm -rf "$DIR"
mkdir -p "$DIR"
python3 -m pip install --quiet --disable-pip-version-check --no-input \
  --target "$DIR" "helm-python-sdk==$HELM_PYTHON_SDK" "kubernetes-validate==$KUBERNETES_VALIDATE" \
  "PyYAML==$PYYAML" "python-hcl2==$PYTHON_HCL2"

#!/usr/bin/env bash
# Python's `jsonschema` and PyYAML, the independent validator that checks docs/sluice.schema.json
# against the example pipelines (tests/tests/all/schema_files.rs runs it through
# tests/schema/validate.py). Installed with pip into /var/tmp/sluice-tools/python, outside any
# system or user site-packages, at pinned versions. Idempotent: when both are there at those
# versions this is a quick no-op.
set -euo pipefail

DIR=${SLUICE_TOOLS:-/var/tmp/sluice-tools}/python
JSONSCHEMA=4.26.0
PYYAML=6.0.2

# Tests run in parallel: one install at a time.
mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
flock 9

# -S: only what is in $DIR counts, never a copy some other site-packages holds.
if PYTHONPATH=$DIR python3 -S -c "
import sys, jsonschema, yaml
from importlib.metadata import version
sys.exit(0 if (version('jsonschema'), yaml.__version__) == ('$JSONSCHEMA', '$PYYAML') else 1)
" 2>/dev/null; then
  exit 0
fi
echo "tools: installing jsonschema $JSONSCHEMA and PyYAML $PYYAML (pip) into $DIR"
mkdir -p "$DIR"
python3 -m pip install --quiet --disable-pip-version-check --no-input --upgrade \
  --target "$DIR" "jsonschema==$JSONSCHEMA" "PyYAML==$PYYAML"

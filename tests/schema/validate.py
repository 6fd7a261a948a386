"""Validate pipeline files against a JSON Schema with Python's `jsonschema`, independently of the
Rust `jsonschema` crate Sluice itself uses.

Usage: validate.py SCHEMA FILE...

Each file's `${VAR:-default}` references are replaced by their defaults first (`${VAR}` without one
by an empty string, `$$` by `$`), as Sluice does with an empty environment before parsing, so
that values such as `brokers: ${KAFKA_BROKERS:-127.0.0.1:9092}` are checked as the host reads
them; a number or boolean given through a variable is checked as its default.

Prints one line per error, `FILE<TAB>PATH<TAB>MESSAGE`, with PATH in Sluice's dotted form
(`handlers[1].limits.timeout_ms`); exits 1 if any file has an error.
"""

import json
import re
import sys

import jsonschema
import yaml

REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z0-9_]+)(?::-([^}]*))?\}")


def interpolate(text):
    def replace(m):
        if m.group(0) == "$$":
            return "$"
        return m.group(2) or ""

    return REFERENCE.sub(replace, text)


def dotted(path):
    out = ""
    for segment in path:
        if isinstance(segment, int):
            out += f"[{segment}]"
        else:
            out += f".{segment}" if out else segment
    return out


def main():
    with open(sys.argv[1]) as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)
    failed = False
    for name in sys.argv[2:]:
        with open(name) as f:
            doc = yaml.safe_load(interpolate(f.read()))
        for error in validator.iter_errors(doc):
            # Into `oneOf`/`anyOf`: the branch that matched best, as Sluice reports it.
            error = jsonschema.exceptions.best_match([error])
            failed = True
            print(f"{name}\t{dotted(error.absolute_path)}\t{error.message}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

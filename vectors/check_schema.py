#!/usr/bin/env python3
"""Validates every vector file against schema/vectors.schema.json.

Needs the `jsonschema` package (scripts/test installs it from PyPI when
missing). Exits 1 naming every file and path that does not conform.
"""
import json
import pathlib
import sys

import jsonschema

here = pathlib.Path(__file__).resolve().parent
schema = json.loads((here / "schema" / "vectors.schema.json").read_text())
validator = jsonschema.Draft202012Validator(schema)
bad = 0
files = sorted(p for p in here.rglob("*.json") if "schema" not in p.parts)
for path in files:
    for err in validator.iter_errors(json.loads(path.read_text())):
        bad += 1
        print(f"{path.relative_to(here)}: {'/'.join(map(str, err.path))}: {err.message}")
print(f"{len(files)} vector files checked against the schema, {bad} problems")
sys.exit(1 if bad else 0)

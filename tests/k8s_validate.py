#!/usr/bin/env python3
"""Validates Kubernetes manifests against the API's own models.

Each document is walked against the Kubernetes Python client's model
classes (generated from the API's OpenAPI schema): an unknown field, a value
of the wrong type or a missing required field is an error naming its path.
The models are then built, which runs the client's own checks (enums,
required fields). Exit status 0 if every document is valid, 1 if not.

Usage: python3 tests/k8s_validate.py FILE.yaml...
"""

import datetime
import re
import sys

import yaml
from kubernetes import client

KINDS = {
    ("apps/v1", "DaemonSet"): "V1DaemonSet",
    ("batch/v1", "Job"): "V1Job",
    ("v1", "Service"): "V1Service",
}


class Invalid(Exception):
    pass


def build(value, type_name, path):
    """The model (or plain value) for `value` of OpenAPI type `type_name`."""
    if value is None:
        return None
    m = re.fullmatch(r"list\[(.+)\]", type_name)
    if m:
        if not isinstance(value, list):
            raise Invalid(f"{path}: expected a list, got {value!r}")
        return [build(v, m.group(1), f"{path}[{i}]") for i, v in enumerate(value)]
    m = re.fullmatch(r"dict\(([^,]+), (.+)\)", type_name)
    if m:
        if not isinstance(value, dict):
            raise Invalid(f"{path}: expected a map, got {value!r}")
        return {k: build(v, m.group(2), f"{path}.{k}") for k, v in value.items()}
    simple = {"str": str, "int": int, "bool": bool, "float": (int, float)}
    if type_name in simple:
        if isinstance(value, bool) and type_name != "bool":
            raise Invalid(f"{path}: expected {type_name}, got a boolean")
        if not isinstance(value, simple[type_name]):
            raise Invalid(f"{path}: expected {type_name}, got {value!r}")
        return value
    if type_name == "object":  # IntOrString, Quantity, free-form
        return value
    if type_name in ("datetime", "date"):
        if not isinstance(value, (str, datetime.date)):
            raise Invalid(f"{path}: expected a time, got {value!r}")
        return value
    cls = getattr(client.models, type_name, None)
    if cls is None:
        raise Invalid(f"{path}: unknown type {type_name}")
    if not isinstance(value, dict):
        raise Invalid(f"{path}: expected an object ({type_name}), got {value!r}")
    by_key = {key: attr for attr, key in cls.attribute_map.items()}
    kwargs = {}
    for key, v in value.items():
        if key not in by_key:
            raise Invalid(f"{path}.{key}: no such field in {type_name}")
        attr = by_key[key]
        kwargs[attr] = build(v, cls.openapi_types[attr], f"{path}.{key}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise Invalid(f"{path}: {type_name}: {e}") from None


def main(files):
    ok = True
    for f in files:
        with open(f) as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d is not None]
        for i, doc in enumerate(docs):
            where = f"{f}#{i}"
            kind = (doc.get("apiVersion"), doc.get("kind"))
            try:
                if kind not in KINDS:
                    raise Invalid(f"unknown apiVersion/kind {kind}")
                build(doc, KINDS[kind], doc["kind"])
                print(f"{where}: {kind[1]} {doc['metadata']['name']}: valid")
            except Invalid as e:
                print(f"{where}: INVALID: {e}", file=sys.stderr)
                ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

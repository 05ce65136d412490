#!/usr/bin/env python3
"""Write (--write) or check (--check) the docs' generated blocks.

A block sits between `<!-- generated: NAME -->` and `<!-- end generated -->`
in a Markdown file under docs/, so the docs cannot drift from the files they
show. Blocks:
- `argocd-health`: the `argocd-cm` entry holding
  argocd/resource_customizations/pgschemarestore.io/SchemaRestore/health.lua.
- `crd-reference`: every field of the SchemaRestore's spec and status, from
  crds/ (what `kubectl explain` shows), so the two cannot disagree.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml

ROOT = Path(__file__).resolve().parent.parent
HEALTH_LUA = ROOT / "argocd/resource_customizations/pgschemarestore.io/SchemaRestore/health.lua"


def argocd_health() -> str:
    body = "".join(f"  {line}".rstrip() + "\n" for line in HEALTH_LUA.read_text().splitlines())
    return ("```yaml\n"
            "resource.customizations.health.pgschemarestore.io_SchemaRestore: |\n"
            f"{body}```\n")


CRD = ROOT / "crds/schemarestores.pgschemarestore.io.yaml"


def _fields(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, prop in schema.get("properties", {}).items():
        here = f"{path}.{name}"
        yield here, prop
        yield from _fields(prop, here)
        if prop.get("type") == "array":
            yield from _fields(prop.get("items", {}), here + "[]")


def _type(prop: dict[str, Any]) -> str:
    kind = prop.get("type", "object")
    if kind == "array":
        return f"array of {prop.get('items', {}).get('type', 'object')}"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    return kind


def crd_reference() -> str:
    crd = yaml.safe_load(CRD.read_text())
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    rows = ["| field | type | default | what it is |", "|---|---|---|---|"]
    for top in ("spec", "status"):
        for path, prop in _fields(schema[top], top):
            default = f"`{prop['default']}`" if "default" in prop else ""
            text = " ".join(prop.get("description", "").split()).replace("|", "\\|")
            rows.append(f"| `{path}` | {_type(prop)} | {default} | {text} |")
    return "\n".join(rows) + "\n"


BLOCKS = {"argocd-health": (ROOT / "docs/operations.md", argocd_health),
          "crd-reference": (ROOT / "docs/reference.md", crd_reference)}


def rendered(text: str, name: str, content: str) -> str:
    pattern = re.compile(rf"(<!-- generated: {re.escape(name)} -->\n).*?(<!-- end generated -->)",
                         re.S)
    if not pattern.search(text):
        raise SystemExit(f"no '<!-- generated: {name} -->' block to fill")
    return pattern.sub(lambda m: m.group(1) + content + m.group(2), text, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode_group = parser.add_mutually_exclusive_group(required=True)
    mode_group.add_argument("--write", action="store_true", help="rewrite stale blocks")
    mode_group.add_argument("--check", action="store_true", help="exit 1 if any is stale")
    write = parser.parse_args(argv).write
    stale = []
    for name, (path, render) in BLOCKS.items():
        text = path.read_text()
        new = rendered(text, name, render())
        if new != text:
            if write:
                path.write_text(new)
            else:
                stale.append(f"{path.relative_to(ROOT)} ({name})")
    if stale:
        print("stale generated docs: " + ", ".join(stale)
              + "; run: python scripts/docs.py --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

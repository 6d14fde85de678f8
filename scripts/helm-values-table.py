#!/usr/bin/env python3
"""Writes the values table of the chart's README from values.yaml: every value with a
`# --` comment (helm-docs' convention), its default and its description.

    scripts/helm-values-table.py            rewrite the table in the chart's README
    scripts/helm-values-table.py --check    exit 1 if the README's table is not current
"""
import json
import pathlib
import re
import sys

import yaml

CHART = pathlib.Path(__file__).resolve().parents[1] / "deploy/helm/alicloud-ops-operator"
START, END = "<!-- values:start -->", "<!-- values:end -->"


def documented(text):
    """(dotted key, description) for each key preceded by a `# --` comment, in file order."""
    out, path, comment = [], [], None
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
        elif stripped.startswith("#") and comment is not None:
            comment.append(stripped[1:].strip())
        elif re.match(r"^[A-Za-z][\w-]*:", stripped):
            depth = indent // 2
            key = stripped.split(":", 1)[0]
            path = path[:depth] + [key]
            if comment is not None:
                out.append((".".join(path), " ".join(comment)))
            comment = None
        elif not stripped:
            comment = None
    return out


def lookup(values, dotted):
    for part in dotted.split("."):
        values = values[part]
    return values


def undocumented(values, documented_keys, prefix=""):
    """Leaf values that neither they nor an enclosing key have a `# --` comment for."""
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if path in documented_keys:
            continue
        if isinstance(value, dict) and value:
            out.extend(undocumented(value, documented_keys, f"{path}."))
        else:
            out.append(path)
    return out


def table():
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    rows = ["| value | default | description |", "|---|---|---|"]
    for key, description in documented(text):
        default = json.dumps(lookup(values, key), separators=(", ", ": "))
        cell = description.replace("|", "\\|")
        rows.append(f"| `{key}` | `{default}` | {cell} |")
    return "\n".join(rows)


def main():
    readme_path = CHART / "README.md"
    readme = readme_path.read_text()
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    current = f"{head}{START}\n{table()}\n{END}{tail}"
    if "--check" in sys.argv:
        text = (CHART / "values.yaml").read_text()
        missing = undocumented(yaml.safe_load(text), {k for k, _ in documented(text)})
        if missing:
            print(f"values without a '# --' description: {', '.join(missing)}", file=sys.stderr)
            sys.exit(1)
        if current != readme:
            print(f"{readme_path} is stale: run scripts/helm-values-table.py", file=sys.stderr)
            sys.exit(1)
        return
    readme_path.write_text(current)


if __name__ == "__main__":
    main()

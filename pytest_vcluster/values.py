"""Chart values checked against ``chart/values.schema.json`` before any cluster exists.

helm would refuse the same values at ``helm install`` time, but only inside the first test's
setup and once per vcluster; checking here turns them into one usage error naming the source.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


@functools.cache
def _chart(chart: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    defaults = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    schema = json.loads((chart / "values.schema.json").read_text())
    return defaults, schema


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base`` as helm merges values (maps key by key)."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def chart_defaults(chart: Path | None = None) -> dict[str, Any]:
    """The chart's own values (its values.yaml)."""
    return copy.deepcopy(_chart(chart or default_chart())[0])


def default_chart() -> Path:
    from .hosts.incluster.chart import chart_dir

    return chart_dir()


def schema_errors(values: Mapping[str, Any], chart: Path | None = None) -> list[str]:
    """What the chart's schema says of ``values`` merged over the chart's defaults, as helm
    merges them; empty when they are fine (or when the chart has no schema)."""
    import jsonschema

    chart = chart or default_chart()
    if not (chart / "values.schema.json").is_file():
        return []
    defaults, schema = _chart(chart)
    merged = deep_merge(defaults, values)
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(merged), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in errors]

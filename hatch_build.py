"""Build hook: the JSON Schemas of playbooks and inventories, generated from the step kinds at build time and
shipped in the wheel as remediate/_data/schema/*.schema.json (the same text `remediate schema KIND` prints)."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class SchemaHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return  # an editable install prints the schemas from the source tree
        sys.path.insert(0, self.root)
        try:
            from remediate.steps import schemas
        finally:
            sys.path.remove(self.root)
        out = Path(tempfile.mkdtemp(prefix="remediate-schema-"))
        for kind in schemas.SCHEMAS:
            path = out / f"{kind}.schema.json"
            path.write_text(schemas.render(kind), encoding="utf-8")
            build_data["force_include"][str(path)] = f"remediate/_data/schema/{kind}.schema.json"

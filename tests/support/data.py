"""Where the tests' data lives, and its golden cases (safe loader only)."""

from __future__ import annotations

from pathlib import Path

import yaml

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
DATA = TESTS / "data"
CASES = TESTS / "cases"
DEMO_DIR = DATA / "rules" / "demo"  # the demo rule set the tests are written against
DEMO = DEMO_DIR / "2024.1.yaml"
DEMO_TEXT = DEMO.read_text(encoding="utf-8")  # the text tests edit into variants of the demo document
BUNDLED = ROOT / "rules"  # the rule sets the project ships


def load_cases(name: str) -> list[dict[str, object]]:
    """Golden cases from tests/cases/NAME.yaml."""
    data = yaml.safe_load((CASES / name).read_text(encoding="utf-8"))
    cases: list[dict[str, object]] = data["cases"]
    return cases


# The yes/no situations of the fire-linkage rule set, for tests that generate fire incidents.
FIRE_FLAGS = (
    "hazardous_materials",
    "casualties_need_treatment",
    "evacuation_or_traffic_control",
    "power_involved",
    "gas_water_or_building_safety",
    "environmental_pollution_risk",
    "residents_need_resettlement",
    "communications_needed",
    "weather_sensitive",
    "transport_or_road_repair",
)

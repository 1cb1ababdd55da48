"""The generated reference pages (docs/reference/*.md) match the code they are generated from."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel, Field

from agent.config import AgentConfig
from agent.metrics import ALARM_FAMILY, FAMILIES, SITE_ALARM_FAMILY

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"


def load_generator() -> ModuleType:
    """Import docs/generate.py (a script outside the packages)."""
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GENERATOR = load_generator()


def test_docs_reference_pages_are_exactly_the_generated_ones():
    """docs/reference holds one page per generator and nothing else."""
    assert sorted(p.name for p in REFERENCE.glob("*.md")) == sorted(GENERATOR.PAGES)


@pytest.mark.parametrize("name", sorted(GENERATOR.PAGES))
def test_docs_reference_committed_page_matches_generator(name):
    """Each committed reference page is what docs/generate.py writes from the current code."""
    committed = (REFERENCE / name).read_text(encoding="utf-8")
    assert committed == GENERATOR.render(name), (
        f"docs/reference/{name} is stale: run `make docs-refs` and commit the result"
    )


def test_docs_reference_config_generator_fails_on_a_field_without_description():
    """A config field with no Field(description=...) stops the generator, naming the field."""

    class Section(BaseModel):
        documented: int = Field(default=1, description="has one")
        bare: int = 2

    class Config(BaseModel):
        section: Section = Field(default=Section(), description="a section")

    with pytest.raises(GENERATOR.MissingDescriptionError, match=r"section\.bare"):
        GENERATOR.check_descriptions(Config)


def test_docs_reference_config_lists_every_key_with_type_default_and_constraint():
    """The configuration page has a row per key, e.g. polling.interval_s with its bounds."""
    page = (REFERENCE / "configuration.md").read_text(encoding="utf-8")
    row = next(line for line in page.splitlines() if line.startswith("| `polling.interval_s`"))
    assert "| number | `30` | > 0, ≤ 3600 |" in row
    keys = [path for path, _info in GENERATOR.config_rows(AgentConfig)]
    for key in keys:
        assert f"| `{key}` |" in page


def test_docs_reference_metrics_lists_every_family_of_the_exposition():
    """Every per-miner family of agent/metrics.py has a row on the metrics page."""
    page = (REFERENCE / "metrics.md").read_text(encoding="utf-8")
    for family in (*FAMILIES, ALARM_FAMILY, SITE_ALARM_FAMILY):
        assert f"| `{family.name}` |" in page

"""``aicp schema chain``: the JSON Schema (draft 2020-12) of chain files, generated from the catalogue.

Every example chain and every file of the old-format corpus is valid against it; a set of broken
chains is rejected by both the schema and ``aicp validate``; params are listed from the same table
(``list-steps --params``) and the README points there instead of copying them.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHAINS = sorted((ROOT / "examples").glob("*.yaml")) + sorted((ROOT / "tests" / "corpus" / "old_tool").glob("*.yaml"))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "aicp", "schema", "chain"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> Any:
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_it_is_a_draft_2020_12_schema(schema: dict[str, Any], aicp) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft202012Validator
    envelope = aicp("schema", "chain", "--json").result
    assert envelope["command"] == "schema" and envelope["data"] == schema


@pytest.mark.parametrize("chain", CHAINS, ids=[f"{p.parent.name}/{p.stem}" for p in CHAINS])
def test_every_example_and_old_format_chain_is_valid(validator: Any, chain: Path) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(yaml.safe_load(chain.read_text()))]
    assert errors == []


def test_the_schema_knows_every_step_type_and_model(schema: dict[str, Any], aicp) -> None:
    listed = aicp("list-steps", "--json").result["data"]
    assert schema["$defs"]["step"]["properties"]["type"]["enum"] == [row["type"] for row in listed]
    models = {row["model"] for row in aicp("list-models", "--json").result["data"]}
    text = json.dumps(schema)
    assert all(f'"{m}"' in text for m in models)


CMD = "params: {run: echo hi}"
BROKEN = {
    "steps-missing": "name: x\n",
    "steps-empty": "name: x\nsteps: []\n",
    "step-type-unknown": "steps:\n  - {type: text_to_imag, model: title_card}\n",
    "step-key-unknown": f"steps:\n  - {{type: command, {CMD}, timout: 3}}\n",
    "timeout-negative": f"steps:\n  - {{type: command, {CMD}, timeout: -3}}\n",
    "enabled-string": f"steps:\n  - {{type: command, {CMD}, enabled: 'yes'}}\n",
    "retry-negative": f"retry_count: -1\nsteps:\n  - {{type: command, {CMD}}}\n",
    "input-type": f"input_type: txt\nsteps:\n  - {{type: command, {CMD}}}\n",
    "max-cost-negative": f"max_cost: -1\nsteps:\n  - {{type: command, {CMD}}}\n",
    "save-intermediates-string": f"save_intermediates: sometimes\nsteps:\n  - {{type: command, {CMD}}}\n",
    "model-missing": "prompt: hi\nsteps:\n  - {type: text_to_image}\n",
    "model-unknown": "prompt: hi\nsteps:\n  - {type: text_to_image, model: title_crd}\n",
    "param-unknown": "prompt: hi\nsteps:\n  - {type: text_to_image, model: title_card, params: {fnt_size: 3}}\n",
    "param-out-of-range": "prompt: hi\nsteps:\n  - {type: text_to_image, model: title_card}\n"
                          "  - {type: split_image, params: {rows: 0}}\n",
    "param-bad-choice": "prompt: hi\nsteps:\n  - {type: text_to_image, model: title_card, params: {aspect_ratio: '2:1'}}\n",
    "param-wrong-type": "prompt: hi\nsteps:\n  - {type: text_to_image, model: flux_dev, params: {num_images: many}}\n",
    "remote-param-unknown": "prompt: hi\nsteps:\n  - {type: text_to_image, model: flux_dev, params: {duraton: 5}}\n",
    "group-in-group": f"steps:\n  - type: parallel_group\n    params:\n      parallel_steps:\n"
                      f"        - {{type: parallel_group, params: {{parallel_steps: [{{type: command, {CMD}}}]}}}}\n",
    "group-strategy": f"steps:\n  - type: parallel_group\n    params:\n      merge_strategy: first\n"
                      f"      parallel_steps: [{{type: command, {CMD}}}]\n",
    "group-without-members": "steps:\n  - {type: parallel_group, params: {max_workers: 2}}\n",
    "command-argv-not-list": "steps:\n  - {type: command, params: {argv: echo}}\n",
    "python-function-missing": "steps:\n  - {type: python}\n",
    "not-a-mapping": "- steps\n",
}


@pytest.mark.parametrize("name", BROKEN)
def test_broken_chains_are_rejected_by_the_schema_and_by_validate(validator: Any, aicp, tmp_path: Path,
                                                                   name: str) -> None:
    text = BROKEN[name]
    assert list(validator.iter_errors(yaml.safe_load(text))), f"the schema accepts {name}"
    (tmp_path / "broken.yaml").write_text(text)
    run = aicp("validate", "--config", "broken.yaml", "--offline")
    assert run.returncode == 2, (name, run.stderr)
    assert run.stderr.startswith("error: broken.yaml:"), run.stderr


def test_param_errors_name_the_param_with_did_you_mean(aicp, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(textwrap.dedent("""\
        prompt: hi
        steps:
          - type: text_to_image
            model: flux_dev
            params: {duraton: 5, num_images: 9}
          - type: image_to_video
            model: kling
            params: {duraton: 5, cfg_scale: 2}
          - type: generate_subtitles
            params: {format: ass, words_per_secnd: 2}
    """))
    run = aicp("validate", "--config", "c.yaml", "--offline", "--json")
    problems = [(p["line"], p["path"], p["message"]) for p in run.result["data"]["problems"]]
    assert [(line, path) for line, path, _ in problems] == [
        (5, "steps[0].params.duraton"), (5, "steps[0].params.num_images"),
        (8, "steps[1].params.duraton"), (8, "steps[1].params.cfg_scale"),
        (10, "steps[2].params.format"), (10, "steps[2].params.words_per_secnd")]
    messages = [m for _, _, m in problems]
    assert "unknown param 'duraton' for text_to_image/flux_dev" in messages[0]
    assert "did you mean 'duration'?" in messages[2]
    assert messages[1] == "must be a whole number >= 1 and <= 4, got 9"
    assert messages[3] == "must be a number >= 0 and <= 1, got 2"
    assert messages[4] == "must be one of srt, vtt, got 'ass'"
    assert "did you mean 'words_per_second'?" in messages[5]


def test_old_params_that_aicp_ignores_are_accepted_and_listed_as_such(aicp, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("prompt: hi\nsteps:\n  - type: text_to_image\n    model: flux\n"
                                     "    params: {style: cinematic, quality: high, width: 1024, height: 768}\n")
    run = aicp("validate", "--config", "c.yaml", "--offline", "--json")
    assert run.returncode == 0 and run.result["data"]["problems"] == []
    listed = aicp("list-steps", "--params").stdout
    assert "style  anything  accepted, not used:" in listed
    rows = {r["model"]: r for r in aicp("list-models", "--json").result["data"]}
    style = next(p for p in rows["flux_dev"]["params"] if p["name"] == "style")
    assert style["status"] == "ignored" and style["note"]


def test_every_executor_declares_its_params(aicp) -> None:
    for row in aicp("list-steps", "--json").result["data"]:
        for executor in row["executors"]:
            assert executor["params"] or executor["open_params"], (row["type"], executor["model"])
            for p in executor["params"]:
                assert {"name", "type", "required", "default", "status"} <= set(p), p


def test_list_steps_params_is_what_validate_checks(aicp) -> None:
    text = aicp("list-steps", "--params").stdout
    assert "words_per_second  a number > 0 and <= 16.6667" in text
    assert "rows  a whole number >= 1 and <= 64  default 2" in text
    assert "merge_strategy  one of collect_all, first_success  default 'collect_all'" in text
    models = aicp("list-models", "--params", "--type", "upscale_video").stdout
    assert "target_fps  a whole number >= 1 and <= 120" in models


def test_readme_points_at_the_generated_params_and_the_schema() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "aicp list-steps --params" in readme
    assert "# yaml-language-server: $schema=" in readme and "aicp schema chain" in readme

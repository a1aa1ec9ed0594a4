"""Chain validation through the real CLI: every rule, one ``error:`` line, file:line:col, field path.

Each invalid chain is written to ``chain.yaml`` in the test's folder and checked
with ``aicp validate`` in a subprocess (cwd = that folder, so the file is named
as the user named it). The expected position is found by searching the chain
text for a marker, independently of the loader: for a value in a mapping the
error points at its key (``chain.yaml:7:5: steps[2].timeout: ...``), for a
list item at the item.
"""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from aicp._chain.steptypes import STEP_TYPES
from aicp._chain.validate import CHAIN_KEYS, GROUP_PARAMS, STEP_KEYS

ERROR_LINE = re.compile(r"^error: (?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<rest>.*)$")

OLD_MODEL_TYPES = ["text_to_video", "image_understanding", "prompt_generation", "image_to_image",
                   "replicate_multitalk"]
# The old model-backed types that no executor serves yet (providers add executors over time).
OLD_MODEL_TYPES_WITHOUT_EXECUTOR = [t for t in OLD_MODEL_TYPES if not STEP_TYPES[t].executors]
OLD_STEP_TYPES = [
    "text_to_image", "text_to_video", "image_understanding", "prompt_generation", "image_to_image",
    "image_to_video", "text_to_speech", "add_audio", "upscale_video", "upscale_image", "split_image",
    "generate_subtitles", "parallel_group", "concat_videos", "replicate_multitalk",
]


def position(text: str, marker: str) -> tuple[int, int]:
    """1-based line and column of the first occurrence of ``marker`` in the (dedented) chain text."""
    text = textwrap.dedent(text).lstrip()
    index = text.index(marker)
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, col


def one_error_line(run) -> str:
    """The run failed as a user error: one line ``error: ...`` on stderr, no traceback."""
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line, got {lines!r}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def check_error(aicp, write_chain, text: str, field: str | None, marker: str | None, *fragments: str,
                name: str = "chain.yaml", command: str = "validate") -> str:
    write_chain(text, name=name)
    run = aicp(command, "--config", name)
    assert run.returncode == 2, (run.returncode, run.stderr)
    line = one_error_line(run)
    m = ERROR_LINE.match(line)
    assert m, f"no file:line:col in {line!r}"
    assert m["file"] == name
    if marker is not None:
        assert (int(m["line"]), int(m["col"])) == position(text, marker), line
    if field is not None:
        assert m["rest"].startswith(f"{field}: "), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


# ----------------------------------------------------------------------------- the spec's own example


def test_error_format_is_exactly_the_documented_one(aicp, write_chain):
    write_chain("""
        name: demo
        steps:
          - {type: command, params: {run: echo one}}
          - {type: command, params: {run: echo two}}
          - type: command
            params: {run: echo three}
            timeout: -3
    """)
    run = aicp("validate", "--config", "chain.yaml")
    assert run.returncode == 2
    assert one_error_line(run) == "error: chain.yaml:7:5: steps[2].timeout: must be a positive number, got -3"


# ----------------------------------------------------------------------------- every rule, one case each

CMD = "params: {run: echo hi}"

CASES = [
    # id, chain text, field path, position marker, message fragments
    ("name-empty", f"""
        name: ""
        steps:
          - type: command
            {CMD}
     """, "name", "name:", ["non-empty string"]),
    ("name-not-string", f"""
        name: [a, b]
        steps:
          - type: command
            {CMD}
     """, "name", "name:", ["non-empty string"]),
    ("steps-missing", """
        name: x
        description: no steps here
     """, None, "name:", ["'steps' is required"]),
    ("steps-empty", """
        name: x
        steps: []
     """, "steps", "steps:", ["non-empty list"]),
    ("steps-not-a-list", """
        name: x
        steps: {type: command}
     """, "steps", "steps:", ["non-empty list"]),
    ("chain-not-a-mapping", """
        - name: x
        - steps: []
     """, None, "- name", ["must be a mapping"]),
    ("step-not-a-mapping", """
        name: x
        steps:
          - command
     """, "steps[0]", "command", ["must be a mapping"]),
    ("unknown-step-key", f"""
        name: x
        steps:
          - type: command
            timout: 3
            {CMD}
     """, "steps[0].timout", "timout:", ["unknown step key 'timout'", "did you mean 'timeout'"]),
    ("type-missing", f"""
        name: x
        steps:
          - model: foo
            {CMD}
     """, "steps[0]", "model:", ["'type' is required"]),
    ("type-unknown", """
        name: x
        steps:
          - type: text_to_imag
            model: title_card
     """, "steps[0].type", "type:", ["unknown step type 'text_to_imag'", "did you mean 'text_to_image'"]),
    ("model-required", """
        name: x
        prompt: hi
        steps:
          - type: text_to_image
     """, "steps[0]", "type:", ["'model' is required for text_to_image", "title_card"]),
    ("model-unknown", """
        name: x
        prompt: hi
        steps:
          - type: text_to_image
            model: title_crd
     """, "steps[0].model", "model:", ["unknown model 'title_crd'", "did you mean 'title_card'"]),
    ("model-not-string", f"""
        name: x
        steps:
          - type: command
            model: 5
            {CMD}
     """, "steps[0].model", "model:", ["must be a string"]),
    ("params-not-mapping", """
        name: x
        steps:
          - type: command
            params: [echo, hi]
     """, "steps[0].params", "params:", ["must be a mapping"]),
    ("enabled-not-bool", f"""
        name: x
        steps:
          - type: command
            enabled: "yes"
            {CMD}
     """, "steps[0].enabled", "enabled:", ["true or false", "'yes'"]),
    ("retry-negative", f"""
        name: x
        steps:
          - type: command
            retry_count: -1
            {CMD}
     """, "steps[0].retry_count", "retry_count:", [">= 0", "-1"]),
    ("retry-fraction", f"""
        name: x
        steps:
          - type: command
            retry_count: 1.5
            {CMD}
     """, "steps[0].retry_count", "retry_count:", [">= 0", "1.5"]),
    ("retry-string", f"""
        name: x
        steps:
          - type: command
            retry_count: "2"
            {CMD}
     """, "steps[0].retry_count", "retry_count:", [">= 0"]),
    ("name-duplicate", f"""
        name: x
        steps:
          - type: command
            name: same
            {CMD}
          - type: command
            name: same
            params: {{run: echo again}}
     """, "steps[1].name", "name: same\n    params: {run: echo again}", ["duplicate step name 'same'"]),
    ("step-name-not-string", f"""
        name: x
        steps:
          - type: command
            name: 5
            {CMD}
     """, "steps[0].name", "name: 5", ["non-empty string"]),
    ("timeout-zero", f"""
        name: x
        steps:
          - type: command
            timeout: 0
            {CMD}
     """, "steps[0].timeout", "timeout:", ["must be a positive number, got 0"]),
    ("timeout-string", f"""
        name: x
        steps:
          - type: command
            timeout: soon
            {CMD}
     """, "steps[0].timeout", "timeout:", ["must be a positive number, got 'soon'"]),
    ("timeout-bool", f"""
        name: x
        steps:
          - type: command
            timeout: true
            {CMD}
     """, "steps[0].timeout", "timeout:", ["must be a positive number"]),
    ("timeout-nan", f"""
        name: x
        steps:
          - type: command
            timeout: .nan
            {CMD}
     """, "steps[0].timeout", "timeout:", ["must be a positive number"]),
    ("memory-zero", f"""
        name: x
        steps:
          - type: command
            max_memory_mb: 0
            {CMD}
     """, "steps[0].max_memory_mb", "max_memory_mb:", ["must be a positive number"]),
    ("memory-negative", f"""
        name: x
        steps:
          - type: command
            max_memory_mb: -512
            {CMD}
     """, "steps[0].max_memory_mb", "max_memory_mb:", ["must be a positive number, got -512"]),
    ("chain-timeout", f"""
        name: x
        timeout: -1
        steps:
          - type: command
            {CMD}
     """, "timeout", "timeout:", ["must be a positive number"]),
    ("chain-retry", f"""
        name: x
        retry_count: -2
        steps:
          - type: command
            {CMD}
     """, "retry_count", "retry_count:", [">= 0"]),
    ("chain-kill-grace", f"""
        name: x
        kill_grace: -2
        steps:
          - type: command
            {CMD}
     """, "kill_grace", "kill_grace:", [">= 0"]),
    ("input-type", f"""
        name: x
        input_type: txt
        steps:
          - type: command
            {CMD}
     """, "input_type", "input_type:", ["text, image, video, auto", "did you mean 'text'"]),
    ("prompt-not-string", f"""
        name: x
        prompt: 5
        steps:
          - type: command
            {CMD}
     """, "prompt", "prompt:", ["non-empty string"]),
    ("output-dir-not-string", f"""
        name: x
        output_dir: [out]
        steps:
          - type: command
            {CMD}
     """, "output_dir", "output_dir:", ["string"]),
    ("all-steps-disabled", f"""
        name: x
        steps:
          - type: command
            enabled: false
            {CMD}
     """, "steps", "steps:", ["every step is disabled"]),
    ("python-function", """
        name: x
        steps:
          - type: python
            params: {function: no_colon_here}
     """, "steps[0].params.function", "function:", ["module:function"]),
    ("python-function-missing", """
        name: x
        steps:
          - type: python
     """, "steps[0].params.function", "type:", ["module:function"]),
    ("command-needs-argv-or-run", """
        name: x
        steps:
          - type: command
            params: {cwd: .}
     """, "steps[0].params", "params:", ["exactly one of 'argv'", "'run'"]),
    ("command-argv-not-list", """
        name: x
        steps:
          - type: command
            params: {argv: echo}
     """, "steps[0].params.argv", "argv:", ["non-empty list"]),
    # parallel groups
    ("group-without-members", """
        name: x
        steps:
          - type: parallel_group
     """, "steps[0].params", "type:", ["params.parallel_steps"]),
    ("group-members-not-list", """
        name: x
        steps:
          - type: parallel_group
            params:
              parallel_steps: {type: command}
     """, "steps[0].params.parallel_steps", "parallel_steps:", ["non-empty list"]),
    ("group-members-empty", """
        name: x
        steps:
          - type: parallel_group
            params:
              parallel_steps: []
     """, "steps[0].params.parallel_steps", "parallel_steps:", ["non-empty list"]),
    ("group-max-workers", f"""
        name: x
        steps:
          - type: parallel_group
            params:
              max_workers: 0
              parallel_steps:
                - type: command
                  {CMD}
     """, "steps[0].params.max_workers", "max_workers:", [">= 1"]),
    ("group-merge-strategy", f"""
        name: x
        steps:
          - type: parallel_group
            params:
              merge_strategy: first_sucess
              parallel_steps:
                - type: command
                  {CMD}
     """, "steps[0].params.merge_strategy", "merge_strategy:",
     ["collect_all, first_success", "did you mean 'first_success'"]),
    ("group-unknown-param", f"""
        name: x
        steps:
          - type: parallel_group
            params:
              parallel_step:
                - type: command
                  {CMD}
     """, "steps[0].params.parallel_step", "parallel_step:",
     ["unknown parallel_group param 'parallel_step'", "did you mean 'parallel_steps'"]),
    ("group-nested", f"""
        name: x
        steps:
          - type: parallel_group
            params:
              parallel_steps:
                - type: parallel_group
                  params:
                    parallel_steps:
                      - type: command
                        {CMD}
     """, "steps[0].params.parallel_steps[0].type", "type: parallel_group\n          params",
     ["cannot contain another parallel_group"]),
    ("group-member-error", f"""
        name: x
        steps:
          - type: parallel_group
            params:
              parallel_steps:
                - type: command
                  {CMD}
                - type: command
                  timeout: -5
                  {CMD}
     """, "steps[0].params.parallel_steps[1].timeout", "timeout:", ["must be a positive number, got -5"]),
    ("group-all-members-disabled", f"""
        name: x
        steps:
          - type: parallel_group
            params:
              parallel_steps:
                - type: command
                  enabled: false
                  {CMD}
     """, "steps[0].params.parallel_steps", "parallel_steps:", ["every member of this group is disabled"]),
    # the flow of data kinds
    ("flow-first-step", """
        name: x
        input_type: text
        steps:
          - type: upscale_image
            model: lanczos
            params: {factor: 2}
     """, "steps[0].type", "type: upscale_image", ["upscale_image expects image input", "chain input gives text"]),
    ("flow-later-step", """
        name: x
        prompt: a lighthouse
        steps:
          - type: text_to_image
            model: title_card
          - type: concat_videos
     """, "steps[1].type", "type: concat_videos", ["concat_videos expects videos input", "gives image"]),
    ("flow-in-group", """
        name: x
        input_type: text
        steps:
          - type: parallel_group
            params:
              parallel_steps:
                - type: upscale_video
                  model: lanczos
                  params: {factor: 2}
     """, "steps[0].params.parallel_steps[0].type", "type: upscale_video", ["upscale_video expects video input"]),
]


@pytest.mark.parametrize("text, field, marker, fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_chain_gives_one_positioned_error(aicp, write_chain, text, field, marker, fragments):
    check_error(aicp, write_chain, text, field, marker, *fragments)


@pytest.mark.parametrize("step_type", OLD_MODEL_TYPES_WITHOUT_EXECUTOR)
def test_recognised_type_without_executor_is_not_available(aicp, write_chain, step_type):
    text = f"""
        name: old
        prompt: a cat
        input_image: cat.png
        steps:
          - type: {step_type}
            model: some-old-model
    """
    check_error(aicp, write_chain, text, "steps[0].type", "type:", "not available in this version")


def test_recognised_type_without_executor_and_without_model_says_not_available(aicp, write_chain):
    # "model is required" would send the user to add a model, only to learn the type cannot run at all
    if not OLD_MODEL_TYPES_WITHOUT_EXECUTOR:
        pytest.skip("every old model-backed step type has an executor now")
    text = f"""
        name: old
        prompt: a cat
        input_image: cat.png
        steps:
          - type: {OLD_MODEL_TYPES_WITHOUT_EXECUTOR[0]}
    """
    check_error(aicp, write_chain, text, "steps[0].type", "type:", "not available in this version")


def test_model_is_optional_for_local_and_single_implementation_types(aicp, write_chain):
    write_chain("""
        name: no models
        prompt: p
        steps:
          - type: python
            model: ignored-by-python
            params: {function: "m:f"}
          - type: command
            params: {run: echo}
          - type: parallel_group
            params:
              parallel_steps:
                - {type: command, params: {run: echo}}
    """)
    run = aicp("validate", "--config", "chain.yaml", "--json")
    assert run.returncode == 0, run.stderr
    assert [s["model"] for s in run.result["data"]["steps"]] == ["ignored-by-python", None, None]
    for step_type in ("add_audio", "split_image", "generate_subtitles", "concat_videos"):
        write_chain(f"""
            name: t
            steps:
              - type: {step_type}
        """)
        run = aicp("validate", "--config", "chain.yaml")
        assert "'model' is required" not in run.stderr, (step_type, run.stderr)


# ----------------------------------------------------------------------------- syntax and the safe loader


def test_yaml_syntax_error_is_positioned(aicp, write_chain):
    text = """
        name: x
        steps:
          - type: command
           params: [}
    """
    line = check_error(aicp, write_chain, text, None, None, "invalid YAML")
    assert ERROR_LINE.match(line)["line"] in ("3", "4")


def test_json_syntax_error_is_positioned(aicp, write_chain):
    text = '{\n  "name": "j",\n  "steps": [\n    {"type": "command",, }\n  ]\n}\n'
    line = check_error(aicp, write_chain, text, None, None, "invalid JSON", name="chain.json")
    assert ERROR_LINE.match(line)["line"] == "4"


def test_json_chain_validation_error_is_positioned(aicp, write_chain):
    text = '{\n  "name": "j",\n  "steps": [\n    {"type": "command", "timeout": -3, "params": {"run": "echo"}}\n  ]\n}\n'
    check_error(aicp, write_chain, text, "steps[0].timeout", '"timeout"', "positive number", name="chain.json")


@pytest.mark.parametrize("tagged", [
    "!!python/object/apply:os.system ['touch pwned']",
    "!!python/object:os.system {}",
    "!!python/name:os.system",
])
def test_python_tags_are_rejected(aicp, write_chain, tmp_path, tagged):
    text = f"""
        name: {tagged}
        steps:
          - type: command
            {CMD}
    """
    check_error(aicp, write_chain, text, None, "!!python", "invalid YAML")
    assert not (tmp_path / "pwned").exists()


def test_empty_file(aicp, write_chain):
    write_chain("")
    run = aicp("validate", "--config", "chain.yaml")
    assert run.returncode == 2
    line = one_error_line(run)
    assert line.startswith("error: chain.yaml:") and "must be a mapping" in line


# ----------------------------------------------------------------------------- --stream: one stdout line


@pytest.mark.parametrize("case", ["timeout-zero", "unknown-step-key", "flow-first-step", "group-member-error"])
def test_stream_mode_invalid_chain_gives_one_result_line(aicp, write_chain, case):
    text = next(c[1] for c in CASES if c[0] == case)
    write_chain(text)
    run = aicp("run-chain", "--config", "chain.yaml", "--stream")
    assert run.returncode == 2
    message = run.stream_failure  # an error event on stderr (JSON lines only), one stdout line
    result = run.result
    assert result["event"] == "pipeline_complete"
    assert result["success"] is False
    assert result["steps_completed"] == 0
    assert result["exit_code"] == 2
    plain = aicp("run-chain", "--config", "chain.yaml")  # the same message as the error line
    assert one_error_line(plain) == f"error: {message}"
    assert ERROR_LINE.match(one_error_line(plain))


def test_syntax_error_in_stream_mode(aicp, write_chain):
    write_chain("name: [unclosed\nsteps: []\n")
    run = aicp("run-chain", "--config", "chain.yaml", "--stream")
    assert run.returncode == 2
    assert "invalid YAML" in run.stream_failure
    assert re.match(r"chain\.yaml:2:\d+: ", run.result["error"])


# ----------------------------------------------------------------------------- warnings, not errors


def test_unknown_top_level_key_is_kept_with_a_warning(aicp, write_chain):
    write_chain(f"""
        name: x
        author: someone
        steps:
          - type: command
            {CMD}
    """)
    run = aicp("validate", "--config", "chain.yaml", "--json")
    assert run.returncode == 0, run.stderr
    data = run.result["data"]
    assert data["valid"] is True
    assert any("'author'" in w for w in data["warnings"]), data["warnings"]
    assert [(p["path"], p["line"], p["column"], p["severity"]) for p in data["problems"]] == \
        [("author", 2, 1, "warning")]
    human = aicp("validate", "--config", "chain.yaml")
    assert human.returncode == 0
    assert "warning:" in human.stdout and "'author'" in human.stdout


@pytest.mark.parametrize("typo, meant", [("promt", "prompt"), ("descripton", "description"),
                                         ("output_dr", "output_dir"), ("max_cots", "max_cost"),
                                         ("input_tpye", "input_type"), ("save_intermediate", "save_intermediates")])
def test_a_top_level_typo_is_an_error_with_did_you_mean(aicp, write_chain, typo, meant):
    text = f"""
        name: x
        {typo}: something
        steps:
          - type: command
            {CMD}
    """
    line = check_error(aicp, write_chain, text, typo, f"{typo}:", f"unknown top-level key '{typo}'",
                       f"did you mean '{meant}'")
    assert line.startswith("error: chain.yaml:2:1: ")


def test_misspelt_steps_gives_both_errors(aicp, write_chain):
    write_chain(f"""
        name: x
        stpes:
          - type: command
            {CMD}
    """)
    run = aicp("validate", "--config", "chain.yaml")
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        "error: chain.yaml:1:1: 'steps' is required",
        "error: chain.yaml:2:1: stpes: unknown top-level key 'stpes' (did you mean 'steps'?)"]


def test_chain_defaults_are_accepted_and_used(aicp, write_chain):
    write_chain(f"""
        name: defaults
        timeout: 30
        retry_count: 2
        kill_grace: 0.5
        steps:
          - type: command
            {CMD}
          - type: command
            timeout: 5
            retry_count: 0
            max_memory_mb: 256
            {CMD}
    """)
    run = aicp("validate", "--config", "chain.yaml", "--json")
    assert run.returncode == 0, run.stderr
    plan = run.result["data"]
    assert plan["kill_grace"] == 0.5
    first, second = plan["steps"]
    assert (first["timeout"], first["retry_count"]) == (30, 2)
    assert (second["timeout"], second["retry_count"], second["max_memory_mb"]) == (5, 0, 256)


NULL_BASE = {"name": "nulls", "prompt": "p", "steps": [
    {"type": "command", "params": {"run": "true"}},
    {"type": "parallel_group", "params": {"parallel_steps": [{"type": "command", "params": {"run": "true"}}]}}]}


def _with_null(where: str, key: str, drop: bool = False) -> dict:
    """The base chain with ``key`` set to null at ``where`` (or, with ``drop``, left out)."""
    chain = json.loads(json.dumps(NULL_BASE))
    target = {"chain": chain, "step": chain["steps"][0], "group": chain["steps"][1]["params"]}[where]
    target[key] = None
    if drop:
        del target[key]
    return chain


@pytest.mark.parametrize("where,key", [("chain", k) for k in sorted(CHAIN_KEYS) if k != "steps"]
                         + [("step", k) for k in sorted(STEP_KEYS) if k != "type"]
                         + [("group", k) for k in sorted(GROUP_PARAMS) if k != "parallel_steps"])
def test_a_null_value_means_the_key_left_out(aicp, write_chain, where, key):
    """``key: null`` is the key left out: the same plan, or the same error (never a crash, never
    a step silently disabled by ``enabled: null``)."""
    answers = []
    for chain in (_with_null(where, key, drop=True), _with_null(where, key)):
        write_chain(json.dumps(chain), name="chain.json")
        run = aicp("validate", "--config", "chain.json", "--json")
        assert run.returncode in (0, 2) and "Traceback" not in run.stderr, (key, run.returncode, run.stderr)
        data = run.result["data"]
        # an error is told at the null value when there is one: compare what, not where
        answers.append((run.returncode, [(p["path"], p["message"]) for p in data["problems"]]
                        if run.returncode else data))
    assert answers[0] == answers[1]


@pytest.mark.parametrize("where,key", [("step", "type"), ("group", "parallel_steps")])
def test_a_null_required_key_is_reported_as_missing(aicp, write_chain, where, key):
    write_chain(json.dumps(_with_null(where, key)), name="chain.json")
    run = aicp("validate", "--config", "chain.json")
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and key in run.stderr


TARGET_MODULE = """
import json as _json, os.path
if True:
    def in_if(ctx): pass
try:
    import tomllib as toml_reader
except ImportError:
    toml_reader = None
for looped in range(1): pass
with open(__file__) as opened: pass
(walrus := 1)
match [1, 2]:
    case [captured, *rest]: pass
def real(ctx): return ctx.input
class Steps:
    def method(self, ctx): pass
"""


@pytest.mark.parametrize("function, warning", [
    ("steps_mod:real", None),
    ("steps_mod:Steps.method", None),
    ("steps_mod:in_if", None),
    ("steps_mod:toml_reader", None),
    ("steps_mod:looped", None),
    ("steps_mod:opened", None),
    ("steps_mod:walrus", None),
    ("steps_mod:captured", None),  # a match capture binds at the top level too
    ("steps_mod:rest", None),
    ("steps_mod:_json", None),
    ("os.path:join", None),  # a submodule its package makes when it runs: only a run can tell
    ("json.decoder:JSONDecoder", None),
    ("math:sqrt", None),  # compiled or built in: not read
    ("starred:anything", None),  # a star import: unknowable without running it
    ("lazy:anything", None),  # a module-level __getattr__
    ("steps_mod:nope", "module 'steps_mod' ({dir}/steps_mod.py) defines no 'nope'"),
    ("steps_mod:method", "defines no 'method'"),  # a method is not a top-level name
    ("json.decoder:nope", "module 'json.decoder' ("),
    ("no_such_module_zz:f", "no module 'no_such_module_zz'"),
    ("no_such_module_zz.sub:f", "no module 'no_such_module_zz.sub'"),
    ("broken:f", "broken.py:2: the module does not parse"),
])
def test_a_python_steps_function_is_looked_for_without_running_it(aicp, write_chain, write_module, tmp_path,
                                                                 function, warning):
    """``validate`` says when ``params.function`` is not there (a warning: the module may appear
    before the step runs), reading the module's source: nothing of it runs (it would write a file)."""
    write_module("steps_mod", TARGET_MODULE + "open(__file__ + '.ran', 'w').close()\n")
    write_module("starred", "from steps_mod import *\nopen(__file__ + '.ran', 'w').close()\n")
    write_module("lazy", "def __getattr__(name):\n    return name\n")
    write_module("broken", "def f(ctx):\n    return (\n")
    write_chain(f"""
        name: targets
        prompt: p
        steps:
          - type: python
            params: {{function: "{function}"}}
    """)
    run = aicp("validate", "--config", "chain.yaml", "--json")
    assert run.returncode == 0, run.stderr
    warnings = [p["message"] for p in run.result["data"]["problems"] if p["path"] == "steps[0].params.function"]
    if warning is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warning.format(dir=tmp_path) in warnings[0], warnings
    assert not list(tmp_path.glob("*.ran")), "validate ran the user's module"


# ----------------------------------------------------------------------------- the old tool's chains


def test_every_old_step_type_is_recognised(aicp, write_chain):
    listed = aicp("list-steps", "--json")
    assert listed.returncode == 0
    names = {row["type"] for row in listed.result["data"]}
    assert set(OLD_STEP_TYPES) | {"python", "command"} <= names
    for step_type in OLD_STEP_TYPES:
        write_chain(f"""
            name: t
            steps:
              - type: {step_type}
        """)
        run = aicp("validate", "--config", "chain.yaml")
        assert "unknown step type" not in run.stderr, (step_type, run.stderr)


def test_old_single_step_chain(aicp, write_chain, write_module):
    write_module("old_steps", """
        def shout(ctx):
            return ctx.input.upper() + "!"
    """)
    write_chain("""
        name: "single step"
        description: "The old tool's simplest chain shape"
        prompt: "a red fox in the snow"
        output_dir: "output"
        steps:
          - type: "python"
            params:
              function: "old_steps:shout"
            enabled: true
            retry_count: 0
    """)
    run = aicp("run-chain", "--config", "chain.yaml", "--stream")
    assert run.returncode == 0, run.stderr
    assert run.result["success"] is True
    assert run.result["outputs"]["step_1_python"]["text"] == "A RED FOX IN THE SNOW!"


def test_old_multi_step_chain_with_disabled_steps(aicp, write_chain, write_module):
    write_module("old_steps", """
        def shout(ctx):
            return ctx.input.upper()
    """)
    write_chain("""
        name: multi
        prompt: lighthouse at dawn
        steps:
          - type: text_to_video          # a model-backed step of the old tool, switched off
            model: kling_2_6_pro
            params: {duration: 5}
            enabled: false
          - type: python
            params: {function: "old_steps:shout"}
          - type: command
            enabled: false
            params: {run: "exit 1"}
          - type: command
            params: {argv: [echo, "got: {input}"]}
    """)
    plan = aicp("validate", "--config", "chain.yaml", "--json")
    assert plan.returncode == 0, plan.stderr
    assert plan.result["data"]["total_steps"] == 2
    assert plan.result["data"]["disabled_steps"] == 2
    run = aicp("run-chain", "--config", "chain.yaml", "--stream")
    assert run.returncode == 0, run.stderr
    assert run.result["total_steps"] == 2
    assert run.result["steps_completed"] == 2
    assert run.result["outputs"]["step_2_command"]["text"] == "got: LIGHTHOUSE AT DAWN"


def test_old_parallel_group_chain(aicp, write_chain):
    write_chain("""
        name: parallel
        prompt: hello
        steps:
          - type: parallel_group
            params:
              max_workers: 2
              merge_strategy: collect_all
              parallel_steps:
                - type: command
                  params: {argv: [echo, "a {input}"]}
                - type: command
                  params: {argv: [echo, "b {input}"]}
                - type: command
                  enabled: false
                  params: {argv: [echo, "never"]}
          - type: command
            params: {argv: [echo, "joined: {input}"]}
    """)
    plan = aicp("validate", "--config", "chain.yaml", "--json")
    assert plan.returncode == 0, plan.stderr
    group = plan.result["data"]["steps"][0]
    assert group["type"] == "parallel_group"
    assert (group["max_workers"], group["merge_strategy"], len(group["members"])) == (2, "collect_all", 2)
    run = aicp("run-chain", "--config", "chain.yaml", "--stream")
    assert run.returncode == 0, run.stderr
    assert run.result["outputs"]["step_1_parallel_group"]["paths"] == ["a hello", "b hello"]
    assert run.result["outputs"]["step_2_command"]["text"] == "joined: a hello b hello"


def test_old_model_backed_chain_fails_clearly(aicp, write_chain):
    """A typical chain of the old tool (remote models) says exactly which step cannot run here."""
    if not OLD_MODEL_TYPES_WITHOUT_EXECUTOR:
        pytest.skip("every old model-backed step type has an executor now")
    missing = OLD_MODEL_TYPES_WITHOUT_EXECUTOR[0]
    text = f"""
        name: cinematic
        prompt: a cinematic drone shot over mountains
        steps:
          - type: text_to_image
            model: title_card
          - type: image_to_video
            model: ken_burns
          - type: upscale_video
            model: lanczos
            params: {{factor: 2}}
          - type: {missing}
            model: some-model
    """
    check_error(aicp, write_chain, text, "steps[3].type", f"type: {missing}", "not available in this version")


def test_validate_reads_chain_from_stdin_and_names_it(aicp):
    run = aicp("validate", "--config", "-", input="name: s\nsteps:\n  - type: command\n    timeout: -3\n"
                                                 "    params: {run: echo}\n")
    assert run.returncode == 2
    assert one_error_line(run) == "error: <stdin>:4:5: steps[0].timeout: must be a positive number, got -3"
    ok = aicp("validate", "--config", "-", "--json",
              input=json.dumps({"name": "s", "steps": [{"type": "command", "params": {"run": "echo"}}]}))
    assert ok.returncode == 0, ok.stderr
    assert ok.result["data"]["source"] == "<stdin>"


# ----------------------------------------------------------------------------- duplicate keys


def test_duplicate_key_is_an_error_at_its_second_occurrence(aicp, write_chain):
    text = """
        name: dup
        prompt: hi
        steps:
          - type: command
            timeout: 5
            params: {run: "true"}
            timeout: 50
    """
    check_error(aicp, write_chain, text, "steps[0].timeout", "timeout: 50", "duplicate key 'timeout'",
                "first given on line 5")


def test_duplicate_top_level_key_in_json_is_an_error(aicp, write_chain):
    text = '{"name": "a", "steps": [{"type": "command", "params": {"run": "true"}}], "name": "b"}'
    line = check_error(aicp, write_chain, text, "name", None, "duplicate key 'name'", name="chain.json")
    assert ":1:" in line


# ----------------------------------------------------------------------------- a parallel group first


GROUP_FIRST = """
    name: group_first
    prompt: hello
    {input_type}
    steps:
      - type: parallel_group
        params:
          parallel_steps:
            - {{type: image_to_video, model: ken_burns}}
            - {{type: command, params: {{run: "true"}}}}
"""


def test_group_first_with_text_input_and_an_image_member_is_invalid(aicp, write_chain):
    check_error(aicp, write_chain, GROUP_FIRST.format(input_type="input_type: text"),
                "steps[0].params.parallel_steps[0].type", "type: image_to_video",
                "image_to_video expects image input")


def test_group_first_with_auto_input_wants_what_its_first_member_wants(aicp, write_chain):
    write_chain(GROUP_FIRST.format(input_type=""))
    assert aicp("validate", "--config", "chain.yaml").returncode == 0
    run = aicp("run-chain", "--config", "chain.yaml")
    assert run.returncode == 2
    assert one_error_line(run) == ("error: chain.yaml: the first step takes image input, but the chain has "
                                   "no 'input_image'; give one with --input FILE")
    text = aicp("run-chain", "--config", "chain.yaml", "--input-text", "not an image")
    assert text.returncode == 2
    assert "steps[0].params.parallel_steps[0] (image_to_video) takes image input, but the input is text" in \
        one_error_line(text)

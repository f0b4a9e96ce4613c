"""Fuzzing the input parsers: group specs (YAML/JSON text and decoded
values) and the API request bodies (``api/schemas.py``).

A spec arrives from ``quorate group apply FILE`` or an API body, so any text
or value must give a GroupSpec or a SpecError (BadRequest for the bodies),
and memory must stay proportional to the input: a spec is rendered once at
validation time, so a placeholder's format spec can make a tiny input
allocate a lot (the first bug this file found).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from fuzz_support import MemoryMeter, guarded, memory_bound, mutated
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from quorate.api.schemas import JoinBody, PutBody, TransferBody, parse_body
from quorate.errors import BadRequest
from quorate.manager.spec import GroupSpec, SpecError, load_spec_text, parse_spec, render, render_health

pytestmark = pytest.mark.fuzz

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID: dict[str, Any] = {
    "id": "web", "size": 2,
    "template": {"command": "python3", "args": ["-m", "http.server", "{port}"], "env": {"SLOT": "{slot}"},
                 "ports": {"port": 8100}, "working_dir": "/srv/{group}", "state_path": "/var/{instance_id}"},
    "health": {"type": "http", "url": "http://127.0.0.1:{port}/", "interval_s": 1, "failure_threshold": 3},
    "update": {"max_unavailable": 1},
}
MANAGERS: dict[str, Any] = {"id": "managers", "logical_ids": ["n1", "n2", "n3"],
                            "template": {"command": "quorate", "args": ["agent", "--id", "{member_id}"]},
                            "health": {"type": "tcp", "port": "{index}"}}
VALID_YAML = yaml.safe_dump(VALID) + "---\n" + yaml.safe_dump(MANAGERS)

# Values a JSON or YAML document can hold, and strings that look like what
# the spec fields expect (placeholders, format specs, ports, names).
placeholder_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["{index}", "{port}", "{slot!r}", "{index:05d}", "{index:>999}", "{index:{index}}",
                     "{index:1000000000}", "{index:.999999999f}", "{slot.__class__}", "{slot[0]}", "{}", "{0}",
                     "{", "}", "{nope}", "{index:,}", "{index:\u0661\u0662}", "\x00", "-1", "65536", "\u00b2"]),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from([-1, 0, 1, 65535, 65536, 10**400, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True), placeholder_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(placeholder_text, inner, max_size=5),
    max_leaves=25,
)


@st.composite
def spec_mutations(draw: st.DrawFn) -> object:
    """A valid spec with a few fields (at any depth) replaced, removed or
    added: most inputs then reach the deeper validators."""
    raw: Any = copy.deepcopy(draw(st.sampled_from([VALID, MANAGERS])))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        target = raw
        while True:
            keys = list(target) if isinstance(target, dict) else list(range(len(target)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            if isinstance(target[key], (dict, list)) and target[key] and draw(st.booleans()):
                target = target[key]
                continue
            action = draw(st.sampled_from(["replace", "remove", "add"]))
            if action == "replace":
                target[key] = draw(json_values)
            elif action == "remove":
                del target[key]
            elif isinstance(target, dict):
                target[draw(placeholder_text)] = draw(json_values)
            else:
                target.append(draw(json_values))
            break
    return raw


def _input_size(raw: object) -> int:
    return len(repr(raw))  # repr, not json: the input may hold NaN or 10**400


def _check_spec(spec: GroupSpec) -> None:
    """What is accepted can be rendered for every slot within memory."""
    for slot in spec.slots()[:3]:
        launch = render(spec, slot, 2, {"join": "http://h:1", "cluster_id": "c"})
        assert sum(map(len, launch.argv)) < 1 << 20
        if spec.health.url or isinstance(spec.health.port, str):
            render_health(spec, slot, 2)


@SETTINGS
@given(st.one_of(spec_mutations(), json_values))
@example({**VALID, "template": {"command": "{index:300000000}"}})  # 300 MB rendered at validation
@example({**VALID, "template": {"command": "{index:.300000000f}"}})
@example({**VALID, "template": {"command": "x", "ports": {"a": 1, "b": 9}, "args": ["{index:{a}{b}}"]}})
@example({**VALID, "template": {"command": "{index:" + "9" * 5000 + "}"}})
@example({**VALID, "health": {"type": "tcp", "port": "\u00b2"}})
@example({**VALID, "health": {"type": "tcp", "port": "9" * 5000}})
@example({**VALID, "size": 10**400})
def test_parse_spec_accepts_or_names_the_field(raw: object) -> None:
    with MemoryMeter() as meter:
        out = meter.run(lambda: parse_spec(raw))
    assert out.peak <= memory_bound(_input_size(raw), constant=4 << 20), (out.peak, _input_size(raw))
    if out.error is not None:
        assert isinstance(out.error, SpecError), repr(out.error)
        return
    assert isinstance(out.value, GroupSpec)
    _check_spec(out.value)


@SETTINGS
@given(st.one_of(mutated(VALID_YAML.encode()).map(lambda b: b.decode("utf-8", "replace")),
                 st.text(max_size=200),
                 json_values.map(json.dumps)))
@example("[" * 5000)
@example("{a: " * 5000)
@example("- " * 5000)
@example("a: &a [*a]")
@example("a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nd: [*c, *c, *c, *c]\n")
@example("!!python/object/apply:os.system ['true']")
@example("id: web\nsize: 1\ntemplate: {command: '{index:300000000}'}\n")
@example("\x00")
@example("--- 1\n--- [2]\n")
def test_load_spec_text_accepts_or_names_the_problem(text: str) -> None:
    """Any text: a list of specs, or a SpecError (never a YAMLError, a
    RecursionError from deep nesting, or a hang on aliases). No memory
    meter here: tracemalloc slows the parser's deep-recursion failure 50
    fold; the memory of what the text decodes to is measured above."""
    try:
        specs = guarded(lambda: load_spec_text(text, "fuzz.yaml"))
    except SpecError:
        return
    assert specs and all(isinstance(s, GroupSpec) for s in specs)
    for spec in specs:
        _check_spec(spec)


def test_a_tiny_spec_text_cannot_allocate_much() -> None:
    """Regression (found here): ``{index:300000000}`` rendered 300 MB at
    validation (and again at every create); ``{index:{a}{b}}`` built such a
    width from two port placeholders. Both are refused, within memory."""
    for command in ("{index:300000000}", "{index:{a}{b}}"):
        text = f"id: web\nsize: 1\ntemplate: {{command: '{command}', ports: {{a: 1, b: 9}}}}\n"
        with MemoryMeter() as meter:
            out = meter.run(lambda: load_spec_text(text))  # noqa: B023 - run at once
        assert isinstance(out.error, SpecError), repr(out.error)
        assert "format" in str(out.error)
        assert out.peak <= memory_bound(len(text), constant=4 << 20), out.peak


def test_valid_seeds_parse() -> None:
    """The seeds of the mutations above are valid (or the fuzzing would
    only ever exercise refusals)."""
    assert [s.id for s in load_spec_text(VALID_YAML)] == ["web", "managers"]


# -- API request bodies -----------------------------------------------------------

bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={"value": json_values, "prev_revision": json_values}),
    st.fixed_dictionaries({}, optional={"id": json_values, "peer_addr": json_values, "api_addr": json_values}),
    st.fixed_dictionaries({}, optional={"target": json_values}),
    st.fixed_dictionaries({"id": placeholder_text, "peer_addr": placeholder_text, "api_addr": placeholder_text}),
)


@SETTINGS
@given(st.sampled_from([PutBody, JoinBody, TransferBody]), bodies)
@example(JoinBody, {"id": "n4", "peer_addr": "h:\u00b2", "api_addr": "h:1"})
@example(JoinBody, {"id": "n4", "peer_addr": "h:" + "9" * 5000, "api_addr": "h:1"})
@example(PutBody, {"value": "v", "prev_revision": 10**400})
@example(PutBody, {"value": "v", "prev_revision": True})
def test_request_bodies_validate_or_are_bad_requests(model: type[Any], raw: object) -> None:
    with MemoryMeter() as meter:
        out = meter.run(lambda: parse_body(model, raw))
    assert out.peak <= memory_bound(_input_size(raw), constant=1 << 20), out.peak
    if out.error is not None:
        assert isinstance(out.error, BadRequest), repr(out.error)
        assert out.error.status == 400 and out.error.to_json()["error"] == "bad_request"
    else:
        assert isinstance(out.value, model)

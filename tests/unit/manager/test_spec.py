"""Group specs: validation errors name the field, loading from YAML/JSON text,
rendering of placeholders, the spec hash, and member ids."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.manager.spec import (
    MAX_SIZE, NAME_PATTERN, GroupSpec, SpecError, instance_id, load_spec_text, member_id, parse_spec, render,
    render_health, slot_of_member,
)

T: dict[str, Any] = {"command": "serve"}


def web(**extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"id": "web", "size": 2, "template": dict(T)}
    raw.update(extra)
    return raw


def refused(raw: object) -> str:
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    return str(err.value)


# -- parse_spec: every refusal names the field -----------------------------------------


def test_a_valid_spec_parses() -> None:
    spec = parse_spec(web())
    assert isinstance(spec, GroupSpec)
    assert spec.slots() == ["0", "1"]
    assert spec.provider == "process"
    assert not spec.is_logical


@pytest.mark.parametrize(("raw", "field"), [
    (web(bogus=1), "bogus"),
    (web(template={"command": "x", "bogus": 1}), "template.bogus"),
    (web(health={"bogus": 1}), "health.bogus"),
    (web(update={"bogus": 1}), "update.bogus"),
])
def test_unknown_field_is_named(raw: dict[str, Any], field: str) -> None:
    msg = refused(raw)
    assert f"{field}: Extra inputs are not permitted" in msg


def test_negative_size_is_refused() -> None:
    msg = refused(web(size=-1))
    assert msg.startswith("invalid group spec: size:")
    assert "greater than or equal to 0" in msg


def test_size_above_max_is_refused_and_max_is_allowed() -> None:
    msg = refused(web(size=MAX_SIZE + 1))
    assert msg.startswith("invalid group spec: size:")
    assert str(MAX_SIZE) in msg
    assert len(parse_spec(web(size=MAX_SIZE)).slots()) == MAX_SIZE
    assert parse_spec(web(size=0)).slots() == []


def test_both_size_and_logical_ids_are_refused() -> None:
    msg = refused(web(logical_ids=["a"]))
    assert "exactly one of 'size'" in msg and "'logical_ids'" in msg


def test_neither_size_nor_logical_ids_is_refused() -> None:
    msg = refused({"id": "web", "template": T})
    assert "exactly one of 'size'" in msg


def test_duplicate_logical_ids_are_refused() -> None:
    msg = refused({"id": "db", "logical_ids": ["a", "b", "a"], "template": T})
    assert "logical_ids:" in msg and "unique" in msg


@pytest.mark.parametrize("name", ["-a", ".a", "a b", "", "a/b", "x" * 64, "é"])
def test_bad_logical_id_names_are_refused(name: str) -> None:
    msg = refused({"id": "db", "logical_ids": ["ok", name], "template": T})
    assert "logical_ids:" in msg
    assert repr(name) in msg


def test_too_many_logical_ids_are_refused() -> None:
    msg = refused({"id": "db", "logical_ids": [f"n{i}" for i in range(MAX_SIZE + 1)], "template": T})
    assert "logical_ids:" in msg and f"at most {MAX_SIZE}" in msg


@pytest.mark.parametrize("field", ["id", "provider"])
@pytest.mark.parametrize("value", ["", "-x", "a b", "web\n", "x" * 64])
def test_bad_group_and_provider_names_are_refused(field: str, value: str) -> None:
    msg = refused(web(**{field: value}))
    assert f"{field}: String should match pattern" in msg


def test_managers_group_needs_logical_ids() -> None:
    msg = refused({"id": "managers", "size": 3, "template": T})
    assert "managers group needs 'logical_ids'" in msg


@pytest.mark.parametrize("bad", ["n2-2", "n-10", "a-b-999"])
def test_manager_logical_id_ending_in_a_replacement_suffix_is_refused(bad: str) -> None:
    msg = refused({"id": "managers", "logical_ids": ["n1", bad], "template": T})
    assert "may not end in '-<number>'" in msg


def test_other_groups_may_use_numeric_suffixes() -> None:
    spec = parse_spec({"id": "db", "logical_ids": ["n2-2"], "template": T})
    assert spec.slots() == ["n2-2"]


@pytest.mark.parametrize(("raw", "where"), [
    (web(template={"command": "x {nope}"}), "template.command"),
    (web(template={"command": "x", "args": ["ok", "{nope}"]}), "template.args[1]"),
    (web(template={"command": "x", "env": {"KEY": "a{nope}b"}}), "template.env.KEY"),
    (web(template={"command": "x", "working_dir": "/w/{nope}"}), "template.working_dir"),
    (web(template={"command": "x", "state_path": "/s/{nope}"}), "template.state_path"),
    (web(health={"type": "http", "url": "http://127.0.0.1/{nope}"}), "health.url"),
    (web(health={"type": "tcp", "port": "{nope}"}), "health.port"),
])
def test_unknown_placeholder_names_the_field_path(raw: dict[str, Any], where: str) -> None:
    msg = refused(raw)
    assert f"{where}: unknown placeholder(s) ['nope']" in msg
    assert "known: [" in msg and "'slot'" in msg


def test_declared_port_names_are_known_placeholders() -> None:
    spec = parse_spec(web(template={"command": "x", "args": ["--port={http}"], "ports": {"http": 8000}},
                          health={"type": "http", "url": "http://127.0.0.1:{http}/health"}))
    assert spec.template.ports == {"http": 8000}


def test_positional_placeholder_is_refused() -> None:
    msg = refused(web(template={"command": "x", "args": ["{}"]}))
    assert "template.args[0]: positional placeholders '{}' are not allowed" in msg


def test_numbered_placeholder_is_an_unknown_one() -> None:
    msg = refused(web(template={"command": "x {0}"}))
    assert "template.command: unknown placeholder(s) ['0']" in msg


def test_broken_brace_syntax_is_refused() -> None:
    msg = refused(web(template={"command": "x {"}))
    assert "bad placeholder syntax" in msg


def test_escaped_braces_are_not_placeholders() -> None:
    spec = parse_spec(web(template={"command": "x", "args": ["{{literal}}"]}))
    assert render(spec, "0", 1).argv == ("x", "{literal}")


@pytest.mark.parametrize(("ports", "needle"), [
    ({"1a": 80}, "port name '1a' must be an identifier"),
    ({"a-b": 80}, "port name 'a-b' must be an identifier"),
    ({"slot": 80}, "port name 'slot' clashes with a built-in placeholder"),
    ({"join": 80}, "port name 'join' clashes with a built-in placeholder"),
    ({"http": 0}, "port http = 0 is not a TCP port"),
    ({"http": 65536}, "port http = 65536 is not a TCP port"),
    ({"http": -5}, "port http = -5 is not a TCP port"),
])
def test_bad_port_names_and_values_are_refused(ports: dict[str, int], needle: str) -> None:
    msg = refused(web(template={"command": "x", "ports": ports}))
    assert "template.ports:" in msg
    assert needle in msg


def test_http_check_without_url_is_refused() -> None:
    msg = refused(web(health={"type": "http"}))
    assert "health:" in msg and "http health check needs a url" in msg


def test_tcp_check_without_port_is_refused() -> None:
    msg = refused(web(health={"type": "tcp"}))
    assert "health:" in msg and "tcp health check needs a port" in msg


@pytest.mark.parametrize(("health", "field"), [
    ({"interval_s": 0}, "health.interval_s"),
    ({"timeout_s": -1}, "health.timeout_s"),
    ({"failure_threshold": 0}, "health.failure_threshold"),
    ({"start_period_s": -1}, "health.start_period_s"),
    ({"type": "grpc"}, "health.type"),
])
def test_bad_health_values_name_the_field(health: dict[str, Any], field: str) -> None:
    assert f"{field}:" in refused(web(health=health))


def test_several_problems_are_all_reported() -> None:
    msg = refused({"id": "-bad", "size": -1, "template": {"command": ""}})
    assert "id:" in msg and "size:" in msg and "template.command:" in msg


@pytest.mark.parametrize("raw", [None, [], "web", 3])
def test_non_mapping_is_refused(raw: object) -> None:
    assert refused(raw).startswith("invalid group spec: spec:")


# -- parse_spec: accepted specs must render (gaps found) --------------------------------------------


@pytest.mark.parametrize("arg", ["{slot:d}", "{slot.nope}", "{index[0]}"])
def test_every_accepted_placeholder_renders(arg: str) -> None:
    try:
        spec = parse_spec(web(template={"command": "x", "args": [arg]}))
    except SpecError:
        return  # refused up front: fine
    render(spec, "0", 1)  # accepted: must render


@pytest.mark.parametrize("port", [70000, 0, "abc"])
def test_health_port_must_be_a_tcp_port(port: int | str) -> None:
    msg = refused(web(health={"type": "tcp", "port": port}))
    assert "health" in msg


def test_rendered_ports_stay_tcp_ports() -> None:
    try:
        spec = parse_spec(web(size=2, template={"command": "x", "args": ["{http}"], "ports": {"http": 65535}}))
    except SpecError:
        return
    for slot in spec.slots():
        assert 1 <= int(render(spec, slot, 1).argv[1]) <= 65535


# -- load_spec_text ----------------------------------------------------------------------------------


def test_load_one_mapping() -> None:
    specs = load_spec_text("id: web\nsize: 2\ntemplate:\n  command: serve\n")
    assert [s.id for s in specs] == ["web"]
    assert specs[0].size == 2


def test_load_a_list() -> None:
    specs = load_spec_text("- {id: a, size: 1, template: {command: x}}\n"
                           "- {id: b, logical_ids: [p, q], template: {command: y}}\n")
    assert [s.id for s in specs] == ["a", "b"]
    assert specs[1].slots() == ["p", "q"]


def test_load_several_documents() -> None:
    text = ("id: a\nsize: 1\ntemplate: {command: x}\n---\n"
            "- {id: b, size: 2, template: {command: y}}\n- {id: c, size: 0, template: {command: z}}\n---\n")
    assert [s.id for s in load_spec_text(text)] == ["a", "b", "c"]


def test_load_json_text() -> None:
    text = json.dumps([web(), {"id": "db", "logical_ids": ["x"], "template": {"command": "db"}}])
    specs = load_spec_text(text)
    assert [s.id for s in specs] == ["web", "db"]
    assert specs[0] == parse_spec(web())


@pytest.mark.parametrize("text", ["", "   \n", "---\n---\n", "[]", "# only a comment\n"])
def test_empty_text_is_refused(text: str) -> None:
    with pytest.raises(SpecError, match=r"^groups\.yaml holds no group spec$"):
        load_spec_text(text, source="groups.yaml")


@pytest.mark.parametrize(("text", "kind"), [("- 1", "int"), ("hello", "str"), ("- [1]", "list"),
                                            ("- {id: a, size: 1, template: {command: x}}\n- null", "NoneType")])
def test_non_mapping_item_is_refused(text: str, kind: str) -> None:
    with pytest.raises(SpecError, match=rf"^f\.yaml: a group spec must be a mapping, got {kind}$"):
        load_spec_text(text, source="f.yaml")


@pytest.mark.parametrize("text", ["{", "a: [", "id: web\n  size: : 2", "\t- x"])
def test_invalid_yaml_is_refused(text: str) -> None:
    with pytest.raises(SpecError, match=r"^f\.yaml is not valid YAML or JSON: "):
        load_spec_text(text, source="f.yaml")


def test_invalid_spec_inside_text_names_the_field() -> None:
    with pytest.raises(SpecError, match=r"size: Input should be greater than or equal to 0"):
        load_spec_text("id: web\nsize: -3\ntemplate: {command: x}\n")


def test_duplicate_ids_across_documents_are_refused() -> None:
    text = "id: web\nsize: 1\ntemplate: {command: x}\n---\nid: web\nsize: 2\ntemplate: {command: y}\n"
    with pytest.raises(SpecError, match=r"^f\.yaml: group ids must be unique, got \['web', 'web'\]$"):
        load_spec_text(text, source="f.yaml")


# -- render --------------------------------------------------------------------------------------


ALL = "g={group} s={slot} i={index} l={logical_id} id={instance_id} inc={incarnation} m={member_id}"


def test_render_size_group() -> None:
    spec = parse_spec({"id": "web", "size": 3, "template": {
        "command": "/bin/{group}", "args": [ALL, "--http={http}", "--admin={admin}", "--join={join}"],
        "env": {"CLUSTER": "{cluster_id}", "SLOT": "{slot}"}, "working_dir": "/w/{instance_id}",
        "state_path": "/s/{group}/{slot}", "ports": {"http": 8000, "admin": 9000}}})
    ls = render(spec, "2", 4, {"join": "http://a:1,http://b:2", "cluster_id": "c1"})
    assert ls.instance_id == "web-2-4"
    assert ls.group == "web" and ls.slot == "2" and ls.logical_id is None
    assert ls.argv == ("/bin/web", "g=web s=2 i=2 l= id=web-2-4 inc=4 m=web-2-4", "--http=8002", "--admin=9002",
                       "--join=http://a:1,http://b:2")
    assert ls.env == {"CLUSTER": "c1", "SLOT": "2"}
    assert ls.working_dir == "/w/web-2-4"
    assert ls.state_path == "/s/web/2"
    assert ls.spec_hash == spec.spec_hash()


def test_render_logical_group() -> None:
    spec = parse_spec({"id": "managers", "logical_ids": ["n1", "n2", "n3"], "template": {
        "command": "quorate", "args": [ALL, "--api={api}"], "state_path": "/data/{member_id}",
        "ports": {"api": 7000}}})
    ls = render(spec, "n2", 1)
    assert ls.instance_id == "managers-n2-1"
    assert ls.logical_id == "n2" and ls.slot == "n2"
    assert ls.argv == ("quorate", "g=managers s=n2 i=1 l=n2 id=managers-n2-1 inc=1 m=n2", "--api=7001")
    assert ls.state_path == "/data/n2"
    # After a replacement the member id carries the incarnation.
    ls3 = render(spec, "n3", 3)
    assert ls3.argv == ("quorate", "g=managers s=n3 i=2 l=n3 id=managers-n3-3 inc=3 m=n3-3", "--api=7002")
    assert ls3.state_path == "/data/n3-3"


def test_render_without_context_leaves_join_and_cluster_id_empty() -> None:
    spec = parse_spec(web(template={"command": "x", "args": ["[{join}]", "[{cluster_id}]"]}))
    assert render(spec, "0", 1).argv == ("x", "[]", "[]")


def test_render_context_cannot_override_instance_fields() -> None:
    spec = parse_spec(web(template={"command": "x", "args": ["{slot}", "{cluster_id}"]}))
    assert render(spec, "1", 1, {"slot": "evil", "cluster_id": "c"}).argv == ("x", "1", "c")


def test_render_slot_outside_the_wanted_ones_uses_its_number_as_index() -> None:
    spec = parse_spec(web(size=2, template={"command": "x", "args": ["{index}", "{p}"], "ports": {"p": 100}}))
    assert render(spec, "7", 1).argv == ("x", "7", "107")


@pytest.mark.parametrize(("inc", "expected"), [(1, "n1"), (2, "n1-2"), (17, "n1-17")])
def test_member_id(inc: int, expected: str) -> None:
    assert member_id("n1", inc) == expected


def test_instance_id_format() -> None:
    assert instance_id("web", "0", 1) == "web-0-1"
    assert instance_id("managers", "n2", 12) == "managers-n2-12"


# -- render_health -------------------------------------------------------------------------------


def test_render_health_http_url() -> None:
    spec = parse_spec(web(size=3, template={"command": "x", "ports": {"http": 8000}},
                          health={"type": "http", "url": "http://127.0.0.1:{http}/h/{slot}/{instance_id}"}))
    assert render_health(spec, "2", 5) == {"type": "http", "host": "127.0.0.1",
                                           "url": "http://127.0.0.1:8002/h/2/web-2-5"}


def test_render_health_tcp_port_placeholder_and_literal() -> None:
    spec = parse_spec(web(size=3, template={"command": "x", "ports": {"http": 8000}},
                          health={"type": "tcp", "host": "10.0.0.1", "port": "{http}"}))
    assert render_health(spec, "1", 1) == {"type": "tcp", "host": "10.0.0.1", "port": 8001}
    literal = parse_spec(web(health={"type": "tcp", "port": 6543}))
    assert render_health(literal, "1", 1) == {"type": "tcp", "host": "127.0.0.1", "port": 6543}


def test_render_health_process_check() -> None:
    assert render_health(parse_spec(web()), "0", 1) == {"type": "process", "host": "127.0.0.1"}


# -- spec_hash -----------------------------------------------------------------------------------


BASE: dict[str, Any] = {"id": "web", "size": 2, "template": {"command": "serve", "args": ["a"]}}


def _hash(**changes: Any) -> str:
    raw = copy.deepcopy(BASE)
    raw.update(changes)
    return parse_spec(raw).spec_hash()


def test_spec_hash_changes_with_template_or_provider() -> None:
    h = _hash()
    assert re.fullmatch(r"[0-9a-f]{16}", h)
    assert _hash() == h  # deterministic
    assert _hash(template={"command": "serve", "args": ["b"]}) != h
    assert _hash(template={"command": "serve2", "args": ["a"]}) != h
    assert _hash(template={"command": "serve", "args": ["a"], "env": {"K": "v"}}) != h
    assert _hash(template={"command": "serve", "args": ["a"], "ports": {"p": 1}}) != h
    assert _hash(provider="other") != h


def test_spec_hash_ignores_size_health_update() -> None:
    h = _hash()
    assert _hash(size=7) == h
    assert _hash(health={"type": "tcp", "port": 80, "failure_threshold": 9}) == h
    assert _hash(update={"max_unavailable": 5}) == h


# -- slot_of_member --------------------------------------------------------------------------------


def test_slot_of_member_examples() -> None:
    assert slot_of_member("n1") == "n1"
    assert slot_of_member("n1-2") == "n1"
    assert slot_of_member("n1-1") == "n1-1"    # incarnation 1 never gets a suffix
    assert slot_of_member("n1-0") == "n1-0"
    assert slot_of_member("a-b-30") == "a-b"
    assert slot_of_member("7") == "7"


_NAME = st.from_regex(NAME_PATTERN, fullmatch=True).filter(lambda s: "\n" not in s)


@settings(max_examples=300, deadline=None)
@given(name=_NAME.filter(lambda s: re.search(r"-\d+$", s) is None), k=st.integers(1, 1000))
def test_slot_of_member_inverts_member_id(name: str, k: int) -> None:
    assert slot_of_member(member_id(name, k)) == name


@settings(max_examples=300, deadline=None)
@given(name=_NAME.filter(lambda s: slot_of_member(s) == s), k=st.integers(1, 1000))
def test_slot_of_member_inverts_member_id_for_every_accepted_manager_id(name: str, k: int) -> None:
    """Every name the spec accepts as a manager logical id (e.g. 'n-1', 'n-01')."""
    parse_spec({"id": "managers", "logical_ids": [name], "template": T})
    assert slot_of_member(member_id(name, k)) == name

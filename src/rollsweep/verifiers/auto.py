"""``auto``: choose the bundled verifier for each row from the fields it has.

In order: a ``verifier`` field naming a bundled verifier; ``instruction_id_list`` (at the top
or in ``verifier_metadata``) -> instruction_following; ``options``, ``template_metadata`` or an
mcqa ``grading_mode`` (such as ``strict_single_letter_boxed``) -> mcqa; a ``get_weather`` tool in
``responses_create_params.tools`` -> tool_use; ``expected_answer`` -> math. A row with none of
these is a VerifierError naming the fields looked for. Its tools are all the bundled tools.
"""

from __future__ import annotations

from typing import Any

from rollsweep.verifiers import instruction_following, math_answer, mcqa, tool_use
from rollsweep.verifiers.base import Verifier, VerifierError

#: The bundled verifiers that ``auto`` dispatches to, by name.
DISPATCHED: dict[str, Verifier] = {
    v.name: v
    for v in (
        math_answer.VERIFIER,
        mcqa.VERIFIER,
        instruction_following.VERIFIER,
        tool_use.VERIFIER,
    )
}


def _tool_names(task: dict[str, Any]) -> set[str]:
    params = task.get("responses_create_params")
    tools = params.get("tools") if isinstance(params, dict) else None
    names: set[str] = set()
    for tool in tools or []:
        if isinstance(tool, dict):
            # Responses format {"type": "function", "name": ...} or Chat's {"function": {...}}
            name = tool.get("name") or (tool.get("function") or {}).get("name")
            if isinstance(name, str):
                names.add(name)
    return names


def choose(task: dict[str, Any]) -> Verifier:
    """The bundled verifier for a row (see the module docstring for the rules)."""
    named = task.get("verifier")
    if named is not None:
        if named == "auto" or named not in DISPATCHED:
            raise VerifierError(
                f"the row's 'verifier' field is {named!r}; expected one of {', '.join(DISPATCHED)}"
            )
        return DISPATCHED[named]
    metadata = task.get("verifier_metadata")  # NeMo Gym's current rows keep the fields there
    if "instruction_id_list" in task or (
        isinstance(metadata, dict) and "instruction_id_list" in metadata
    ):
        return instruction_following.VERIFIER
    if (
        "options" in task
        or "template_metadata" in task
        or task.get("grading_mode") in mcqa.GRADING_MODES
    ):
        return mcqa.VERIFIER
    if tool_use.TOOL_NAME in _tool_names(task):
        return tool_use.VERIFIER
    if "expected_answer" in task:
        return math_answer.VERIFIER
    raise VerifierError(
        "the auto verifier cannot tell how to grade this row: it has none of the fields "
        "'verifier', 'instruction_id_list', 'options', a get_weather tool in "
        "'responses_create_params.tools', or 'expected_answer'"
    )


def verify_auto(task: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """Grade with the verifier chosen for the row; details name it as ``verifier``."""
    chosen = choose(task)
    return {**chosen.verify(task, response), "verifier": chosen.name}


VERIFIER = Verifier(
    name="auto",
    verify=verify_auto,
    tools={name: fn for v in DISPATCHED.values() for name, fn in v.tools.items()},
    tool_specs=[spec for v in DISPATCHED.values() for spec in v.tool_specs],
)

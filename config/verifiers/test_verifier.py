"""Example user verifier: instruction following with partial credit.

This is the verifier of the ``test_verifier`` agent, used by the seed's "verification testing"
pattern on ``verification_test.jsonl`` (two instructions per task, so each rollout scores 0.0,
0.5 or 1.0).

A verifier file needs one function, ``verify(task, response)``:

- ``task`` is the input row (a dict), with its verifier fields such as ``instruction_id_list``;
- ``response`` is the Responses API object the agent produced (``response["output"]`` holds the
  model's messages and tool calls);
- it returns a float reward, or a dict with a ``reward`` and any details you want to see in the
  rollout rows.

Edit this file while the servers run: it is reloaded on the next rollout, no restart needed.
Then rerun the collection and compare ``jq '.reward' … | sort -n | uniq -c``.
"""

from rollsweep.verifiers import final_text
from rollsweep.verifiers.instruction_following import check_instructions


def verify(task: dict, response: dict) -> dict:
    # The model's final answer: the text of its last message.
    answer = final_text(response)

    # One True/False per instruction of the task, e.g. [True, False].
    followed = check_instructions(task["instruction_id_list"], task.get("kwargs"), answer)

    # Partial credit: the share of instructions followed (0.0, 0.5 or 1.0 for two).
    reward = sum(followed) / len(followed) if followed else 0.0

    # Try a change and watch the reward distribution move, for example all-or-nothing:
    #     reward = 1.0 if all(followed) else 0.0

    return {"reward": reward, "follow_instruction_list": followed}

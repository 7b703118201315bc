"""``math``: is the answer mathematically equal to ``expected_answer``? (NeMo Gym's math_with_judge)

Reference: NeMo Gym's ``math_with_judge`` resources server (v0.4.0 and current main grade the
same way) with ``math-verify==0.8.0``, the version it pins. Its library step, reproduced here:

- the graded text is every ``output_text`` of every message item, joined (``output_text``);
- the expected answer loses outer ``$...$`` / ``\\(...\\)`` delimiters, is wrapped in
  ``\\boxed{...}`` and parsed with ``LatexExtractionConfig()``; the text is parsed with
  ``(ExprExtractionConfig(), LatexExtractionConfig())``: the last ``\\boxed{}`` wins (several
  boxes in one line become a set: ``\\boxed{2} or \\boxed{3}`` reads as {2, 3}), an unclosed
  box is no answer; without a box, an "answer is" phrase, then the last LaTeX or plain
  expression of the text;
- equal when math-verify's ``verify(gold, pred, float_rounding=6)`` says so for any pair:
  expressions, sets, intervals, equations (``x=2`` vs ``2``), matrices and percents
  (``50\\%`` = ``0.5``) compare as values, so ``x+1`` = ``1+x`` and ``2\\sqrt{3}`` != ``2``;
- ``extracted_answer``: the first parsed prediction that matches, else the first one.

Where rollsweep differs, deliberately:

- ``grading_mode`` ``exact`` (default) rejects a match that holds only after rounding to 6
  decimals (``3.1415926`` for ``\\pi``, ``0.333333`` for ``1/3``, ``0.1234568`` for
  ``0.1234567``): math-verify calls those equal, and they are not. ``library`` is NeMo Gym's
  verdict unchanged.
- A timeout is a verifier failure (:class:`VerifierFailure` ``verifier_timeout``), never a
  silent 0 as in NeMo Gym. math-verify runs in worker processes (its timeouts use
  ``signal.alarm``, which works only in a main thread, and servers verify in threads); a
  worker that overruns its budget is killed and replaced. Budget: the row's
  ``library_verifier_timeout_seconds`` (NeMo Gym's setting), else the environment's
  ``ROLLSWEEP_MATH_TIMEOUT_SECONDS``, else 10 s as in NeMo Gym.
- An ``expected_answer`` math-verify cannot parse is a failure
  (``expected_answer_unparsable``), not a 0. An empty answer scores 0 without asking a judge.

Judge (off by default; NeMo Gym's ``should_use_judge``): when the library says "not equal",
a judge model on any OpenAI-compatible server (row fields ``should_use_judge: true``,
``judge_base_url`` like ``http://127.0.0.1:8000/v1``, optional ``judge_api``
``responses``/``chat_completions`` and ``judge_responses_create_params`` such as the model
name) is asked whether the two answers are equivalent, in both orders; 1.0 only when both say
``[[A=B]]`` (the first label in the reply counts; an unreadable reply counts as "different").
A judge that cannot be reached is a ``judge_failed`` failure.

Row fields: ``expected_answer`` (required), ``question`` (judge only), the settings above.
Details: ``extracted_answer``, ``expected_answer``, ``library_reward`` (math-verify as NeMo
Gym runs it), ``grading_mode``, ``rounding_only`` (a match the exact mode rejected) and
``judge_evaluations`` (the judge's requests and replies, or None).
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from rollsweep.rollouts.text import prompt_text
from rollsweep.verifiers.base import (
    Verifier,
    VerifierError,
    VerifierFailure,
    joined_output_text,
)

GRADING_MODES = ("exact", "library")
DEFAULT_GRADING_MODE = "exact"
#: NeMo Gym's ``library_verifier_timeout_seconds`` default.
DEFAULT_TIMEOUT_SECONDS = 10.0
#: The process-wide default for rows without ``library_verifier_timeout_seconds``.
TIMEOUT_ENV = "ROLLSWEEP_MATH_TIMEOUT_SECONDS"
#: How long past its own deadline a worker may stay silent before it is killed (a signal
#: cannot interrupt a long C-level computation).
KILL_GRACE_SECONDS = 2.0
#: Allowance for a fresh worker's start-up (imports and a first parse) on a busy machine.
STARTUP_SECONDS = 60.0
#: Worker processes per verifying process (each holds sympy, about 100 MB).
MAX_WORKERS = max(1, min(4, os.cpu_count() or 1))
JUDGE_HTTP_TIMEOUT_SECONDS = 120.0

EQUAL_LABEL = "[[A=B]]"
NOT_EQUAL_LABEL = "[[A!=B]]"
JUDGE_SYSTEM_PROMPT = f"""You compare two final answers to the same math problem.

Decide only whether answer A and answer B are mathematically equivalent: the same number, \
expression, set, interval or equation, possibly written differently. Ignore formatting, units \
written out, and the working that led to them; do not judge which one is right.

End your reply with exactly one verdict:
- {EQUAL_LABEL} if the answers are equivalent;
- {NOT_EQUAL_LABEL} if they are not.

For example: "Both are one half. Verdict: {EQUAL_LABEL}\""""
JUDGE_USER_TEMPLATE = """Problem:
{question}

Answer A:
{first_answer}

Answer B:
{second_answer}"""


def strip_math_delimiters(text: str) -> str:
    """The expected answer without outer ``\\(...\\)`` and ``$...$`` (as NeMo Gym strips it)."""
    text = text.strip()
    if text.startswith("\\(") and text.endswith("\\)"):
        text = text[2:-2].strip()
    if text.startswith("$") and text.endswith("$") and len(text) > 1:
        text = text[1:-1].strip()
    return text


# --------------------------------------------------------------------------- the worker side


def _library_check(expected: str, text: str, timeout_seconds: float) -> dict[str, Any]:
    """math-verify as NeMo Gym configures it, under one deadline; runs in a worker process."""
    # heavy (about a second with sympy): only the worker processes import them
    import sympy
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException
    from math_verify.parser import ExprExtractionConfig, LatexExtractionConfig

    expired = False

    def on_alarm(signum: int, frame: Any) -> None:
        nonlocal expired
        expired = True
        # math-verify catches this (its own timeout exception) and returns "no parse"/False;
        # ``expired`` tells the two apart
        raise TimeoutException("rollsweep math deadline")

    def timed_out(stage: str) -> dict[str, Any]:
        return {"timeout": stage}

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_seconds)
    stage = "parse"
    try:
        # parsing_timeout/timeout_seconds None: math-verify's own alarms would cancel ours
        golds = parse(
            "\\boxed{" + strip_math_delimiters(expected) + "}",
            (LatexExtractionConfig(),),
            parsing_timeout=None,
        )
        if expired:
            return timed_out(stage)
        preds = parse(text, (ExprExtractionConfig(), LatexExtractionConfig()), parsing_timeout=None)
        if expired:
            return timed_out(stage)
        if not golds:
            return {"gold_unparsable": True}
        stage = "compare"
        matches: list[tuple[Any, Any]] = []
        for pred in preds:
            for gold in golds:
                # float_rounding=6: math_metric(precision=6) in NeMo Gym
                if verify(gold, pred, 6, timeout_seconds=None):
                    matches.append((gold, pred))
                if expired:
                    return timed_out(stage)
        stage = "report"
        first_match = next((pred for _, pred in matches), None)
        shown = first_match if first_match is not None else (preds[0] if preds else None)
        exact = [pair for pair in matches if not _rounding_only(*pair, sympy)]
        return {
            "library_reward": 1.0 if matches else 0.0,
            "exact_reward": 1.0 if exact else 0.0,
            "extracted_answer": None if shown is None else str(shown),
        }
    except TimeoutException:
        return timed_out(stage)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _rounding_only(gold: Any, pred: Any, sympy: Any) -> bool:
    """Do these two expressions match only because decimals were rounded to 6 places?"""
    if not (isinstance(gold, sympy.Expr) and isinstance(pred, sympy.Expr)):
        return False  # sets, intervals, equations, matrices: as math-verify says
    floats = gold.atoms(sympy.Float) | pred.atoms(sympy.Float)
    if not floats:
        return False
    # a decimal the model wrote means exactly what it says: 0.333333 is 333333/10**6
    exact = {number: sympy.Rational(str(number)) for number in floats}
    difference = gold.xreplace(exact) - pred.xreplace(exact)
    if difference == 0:
        return False
    if difference.free_symbols:
        return sympy.simplify(difference) != 0
    return abs(sympy.N(difference, 50)) > sympy.Float("1e-40")


def _exit_with_parent(every_s: float = 0.2) -> None:
    """Exit as soon as the server that started this worker is gone, even mid-computation.

    (Closed pipes end the request loop only between rows; PR_SET_PDEATHSIG would fire when the
    server's *thread* that started the worker ends, which its thread pool does when idle.)
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _worker_main() -> None:
    """Answer one JSON request per stdin line on the original stdout, until stdin closes."""
    _exit_with_parent()
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # a stray print from a library must not corrupt the replies
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.CRITICAL)
    _library_check("1", "\\boxed{1}", 30.0)  # load the LaTeX parser before the first request
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = _library_check(request["expected"], request["text"], request["timeout"])
        except Exception as error:  # a library bug on one row must not kill the worker
            reply = {"error": f"{type(error).__name__}: {error}"}
        channel.write(json.dumps(reply) + "\n")
        channel.flush()


# --------------------------------------------------------------------------- the parent side


class _Worker:
    """One worker process and a thread that reads its replies."""

    def __init__(self) -> None:
        source = str(Path(__file__).resolve().parents[2])  # the directory holding rollsweep/
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": source + (os.pathsep + path if path else "")}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from rollsweep.verifiers.math_answer import _worker_main; _worker_main()",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            encoding="utf-8",
        )
        self.replies: queue.Queue[str | None] = queue.Queue()
        self.warm = False  # answered once: sympy and the LaTeX parser are loaded
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.replies.put(line)
        self.replies.put(None)

    def ask(self, request: dict[str, Any], wait: float) -> dict[str, Any] | str:
        """The reply, or ``"died"`` (the worker's pipes closed) or ``"silent"`` (no reply in
        ``wait`` seconds)."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except OSError:
            return "died"
        try:
            line = self.replies.get(timeout=wait)
        except queue.Empty:
            return "silent"
        return "died" if line is None else json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class WorkerPool:
    """Up to ``size`` math-verify worker processes, started on demand and reused."""

    def __init__(self, size: int = MAX_WORKERS) -> None:
        self.size = size
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._started = 0
        self.replaced = 0  # workers killed after a deadline (tests and benchmarks read it)

    def _acquire(self) -> _Worker:
        with self._lock:
            fresh = self._idle.empty() and self._started < self.size
            if fresh:
                self._started += 1
        if fresh:
            try:
                return _Worker()
            except BaseException:
                with self._lock:
                    self._started -= 1
                raise
        worker = self._idle.get()
        if worker.process.poll() is None:
            return worker
        with self._lock:  # it died while idle (killed from outside): start another
            self._started -= 1
        return self._acquire()

    def _discard(self, worker: _Worker) -> None:
        worker.close()
        with self._lock:
            self._started -= 1
            self.replaced += 1

    def check(self, expected: str, text: str, timeout_seconds: float) -> dict[str, Any]:
        """The worker's verdict; a deadline overrun or a dead worker is a VerifierFailure.

        A worker that dies is replaced and the row tried once more (it may have been killed
        from outside); a row that kills two workers is a ``verifier_crashed`` failure.
        """
        request = {"expected": expected, "text": text, "timeout": timeout_seconds}
        for _attempt in (1, 2):
            worker = self._acquire()
            wait = timeout_seconds + KILL_GRACE_SECONDS
            if not worker.warm:
                wait += STARTUP_SECONDS  # a fresh worker loads sympy and the LaTeX parser first
            reply = worker.ask(request, wait)
            if isinstance(reply, dict):
                worker.warm = True
                self._idle.put(worker)
                return reply
            self._discard(worker)
            if reply == "silent":
                raise VerifierFailure(
                    "verifier_timeout",
                    f"math-verify did not finish within {timeout_seconds:g} s "
                    "(library_verifier_timeout_seconds); the worker was killed",
                )
        raise VerifierFailure(
            "verifier_crashed", "the math-verify worker process died on this row, twice"
        )

    def close(self) -> None:
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                break
            worker.close()
            with self._lock:
                self._started -= 1


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def worker_pool() -> WorkerPool:
    """The process-wide worker pool (closed at exit)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = WorkerPool()
            atexit.register(_POOL.close)
        return _POOL


@dataclass(frozen=True)
class LibraryVerdict:
    """math-verify's verdict as NeMo Gym runs it, plus the exact-mode verdict."""

    library_reward: float
    exact_reward: float
    extracted_answer: str | None


def library_verdict(
    expected: str, text: str, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> LibraryVerdict:
    """Grade ``text`` against ``expected`` with math-verify in a worker process.

    Raises VerifierFailure for a timeout, a dead worker or an unparsable expected answer.
    """
    reply = worker_pool().check(expected, text, timeout_seconds)
    if "timeout" in reply:
        raise VerifierFailure(
            "verifier_timeout",
            f"math-verify hit the {timeout_seconds:g} s deadline while in its {reply['timeout']} "
            "step (library_verifier_timeout_seconds)",
        )
    if reply.get("gold_unparsable"):
        raise VerifierFailure(
            "expected_answer_unparsable",
            f"math-verify cannot parse expected_answer {expected!r}",
        )
    if "error" in reply:
        raise VerifierFailure("verifier_error", f"math-verify failed: {reply['error']}")
    return LibraryVerdict(
        library_reward=float(reply["library_reward"]),
        exact_reward=float(reply["exact_reward"]),
        extracted_answer=reply["extracted_answer"],
    )


# --------------------------------------------------------------------------- the judge


@dataclass(frozen=True)
class JudgeSettings:
    base_url: str
    api: str = "responses"  # or "chat_completions"
    params: dict[str, Any] | None = None


def _judge_text(api: str, reply: Any) -> str | None:
    """The judge's verdict text (None when the reply has no final text message)."""
    if not isinstance(reply, dict):
        return None
    if api == "chat_completions":
        choices = reply.get("choices") or [{}]
        content = (choices[0] or {}).get("message", {}).get("content")
        return content if isinstance(content, str) else None
    # as NeMo Gym: the last output item must be a message whose last part is output_text
    output = reply.get("output") or []
    last = output[-1] if output else None
    if not isinstance(last, dict) or last.get("type") != "message":
        return None
    content = last.get("content") or []
    part = content[-1] if content else None
    if not isinstance(part, dict) or part.get("type") != "output_text":
        return None
    return part.get("text") if isinstance(part.get("text"), str) else None


def judges_equal(text: str | None) -> bool:
    """The first verdict label in the judge's text; none (or no text) means "different"."""
    if not text:
        return False
    equal, different = text.find(EQUAL_LABEL), text.find(NOT_EQUAL_LABEL)
    return equal >= 0 and (different < 0 or equal < different)


def ask_judge(
    settings: JudgeSettings, question: str, first_answer: str, second_answer: str
) -> tuple[bool, dict[str, Any]]:
    """One judge call: (equal?, {"request", "response"}); a failed call is ``judge_failed``."""
    prompt = JUDGE_USER_TEMPLATE.format(
        question=question, first_answer=first_answer, second_answer=second_answer
    )
    messages = [
        {"role": "system", "content": JUDGE_SYSTEM_PROMPT},
        {"role": "user", "content": prompt},
    ]
    key = "messages" if settings.api == "chat_completions" else "input"
    path = "/chat/completions" if settings.api == "chat_completions" else "/responses"
    request = {**(settings.params or {}), key: messages}
    url = settings.base_url.rstrip("/") + path
    try:
        response = httpx.post(url, json=request, timeout=JUDGE_HTTP_TIMEOUT_SECONDS)
        response.raise_for_status()
        reply = response.json()
    except (httpx.HTTPError, ValueError) as error:
        raise VerifierFailure("judge_failed", f"{type(error).__name__}: {error}") from None
    return judges_equal(_judge_text(settings.api, reply)), {"request": request, "response": reply}


def judge_verdict(
    settings: JudgeSettings, question: str, expected: str, answer: str
) -> tuple[float, list[dict[str, Any]]]:
    """NeMo Gym's two-order judging: 1.0 only when both orders say equal."""
    equal, first = ask_judge(settings, question, expected, answer)
    if not equal:
        return 0.0, [first]
    equal, second = ask_judge(settings, question, answer, expected)
    return (1.0 if equal else 0.0), [first, second]


# --------------------------------------------------------------------------- verify


def _timeout_of(task: dict[str, Any]) -> float:
    """The row's ``library_verifier_timeout_seconds``, else ``$ROLLSWEEP_MATH_TIMEOUT_SECONDS``,
    else NeMo Gym's 10 s."""
    value: Any = task.get("library_verifier_timeout_seconds")
    source = "library_verifier_timeout_seconds"
    if value is None and os.environ.get(TIMEOUT_ENV):
        source = TIMEOUT_ENV
        try:
            value = float(os.environ[TIMEOUT_ENV])
        except ValueError:
            value = os.environ[TIMEOUT_ENV]
    if value is None:
        return DEFAULT_TIMEOUT_SECONDS
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e6:
        raise VerifierError(f"{source} must be a positive number of seconds, got {value!r}")
    return float(value)


def _judge_of(task: dict[str, Any]) -> JudgeSettings | None:
    use = task.get("should_use_judge", False)
    if use in (None, False):
        return None
    if use is not True:
        raise VerifierError(f"should_use_judge must be true or false, got {use!r}")
    base_url = task.get("judge_base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise VerifierError(
            "should_use_judge needs 'judge_base_url', an OpenAI-compatible base URL such as "
            f"http://127.0.0.1:8000/v1, got {base_url!r}"
        )
    api = task.get("judge_api") or "responses"
    if api not in ("responses", "chat_completions"):
        raise VerifierError(f"judge_api must be responses or chat_completions, got {api!r}")
    params = task.get("judge_responses_create_params") or {}
    if not isinstance(params, dict):
        raise VerifierError("judge_responses_create_params must be an object")
    return JudgeSettings(base_url=base_url, api=api, params=params)


def _question_of(task: dict[str, Any]) -> str:
    """The judge's question: the task's ``question``, else its prompt."""
    question = task.get("question")
    return question if isinstance(question, str) else prompt_text(task)


def verify_math(task: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """Reward 1.0 when the answer equals ``expected_answer`` (see the module docstring)."""
    expected = task.get("expected_answer")
    if (
        expected is None
        or isinstance(expected, bool)
        or not isinstance(expected, str | int | float)
        or (isinstance(expected, float) and not math.isfinite(expected))
        or not str(expected).strip()
    ):
        raise VerifierError(
            "the math verifier needs an 'expected_answer' field (a non-empty string or a "
            f"number), got {expected!r}"
        )
    expected = str(expected)
    mode = task.get("grading_mode") or DEFAULT_GRADING_MODE
    if mode not in GRADING_MODES:
        raise VerifierError(
            f"unknown math grading_mode {mode!r} (known: {', '.join(GRADING_MODES)})"
        )
    timeout = _timeout_of(task)
    judge = _judge_of(task)
    text = joined_output_text(response)
    result: dict[str, Any] = {
        "reward": 0.0,
        "extracted_answer": None,
        "expected_answer": expected,
        "library_reward": 0.0,
        "grading_mode": mode,
        "rounding_only": False,
        "judge_evaluations": None,
    }
    if not text.strip():
        return result  # an empty answer is wrong; no judge is asked about it
    try:
        verdict = library_verdict(expected, text, timeout)
    except VerifierFailure as failure:
        if judge is None:
            raise
        # as NeMo Gym: the judge decides when the library could not; the row says why
        result["library_reward"] = None
        result["library_failure"] = failure.failure_class
        verdict = None
    if verdict is not None:
        reward = verdict.exact_reward if mode == "exact" else verdict.library_reward
        result.update(
            reward=reward,
            extracted_answer=verdict.extracted_answer,
            library_reward=verdict.library_reward,
            rounding_only=verdict.library_reward > verdict.exact_reward,
        )
        if reward > 0.5 or judge is None:
            return result
    answer = result["extracted_answer"] or text
    reward, evaluations = judge_verdict(judge, _question_of(task), expected, answer)
    result.update(reward=reward, judge_evaluations=evaluations)
    return result


VERIFIER = Verifier(name="math", verify=verify_math)

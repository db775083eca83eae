"""The few upstream rules the rendered pipelines depend on, written down as small functions.

Each function restates one piece of upstream code (cited) closely enough to decide what a
controller does with our objects. The tests feed them the rendered objects; the negative
controls next to each test show that the rule can reject. A real controller tier replaces
these where it can run; until then, a rule misread here is a rule misread once, in one place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

# --- Argo Workflows: which token a step's pod gets ------------------------------------------------


def executor_token_secret_name(account: Mapping[str, Any]) -> str:
    """The Secret Argo mounts as the executor's token.

    argo-workflows util/secrets/secret_name.go, ServiceAccountTokenName: the account's first
    ``secrets`` entry, else the annotation ``workflows.argoproj.io/service-account-token.name``,
    else ``<name>.service-account-token``.
    """
    secrets = account.get("secrets") or []
    if secrets:
        return str(secrets[0]["name"])
    annotations = account.get("metadata", {}).get("annotations") or {}
    if "workflows.argoproj.io/service-account-token.name" in annotations:
        return str(annotations["workflows.argoproj.io/service-account-token.name"])
    return f"{account['metadata']['name']}.service-account-token"


def pod_automount(template: Mapping[str, Any], spec: Mapping[str, Any]) -> bool | None:
    """``pod.spec.automountServiceAccountToken`` of a step's pod as Argo creates it.

    argo-workflows workflow/controller/workflowpod.go, setupServiceAccount: the template's
    value, else the workflow spec's; it is copied to the pod **only when false**
    (``if automountServiceAccountToken != nil && !*automountServiceAccountToken``), so a
    template's ``true`` leaves the pod's field unset.
    """
    value = template.get("automountServiceAccountToken", spec.get("automountServiceAccountToken"))
    return False if value is False else None


def pod_service_account(template: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    """setupServiceAccount: the template's serviceAccountName, else the workflow's, else default."""
    return str(template.get("serviceAccountName") or spec.get("serviceAccountName") or "default")


def kubernetes_mounts_token(pod_value: bool | None, account: Mapping[str, Any]) -> bool:
    """Whether Kubernetes mounts the account token into a pod.

    kubernetes plugin/pkg/admission/serviceaccount/admission.go, shouldAutomount: the pod's
    ``automountServiceAccountToken`` when set, else the ServiceAccount's, else true.
    """
    if pod_value is not None:
        return pod_value
    return account.get("automountServiceAccountToken", True) is not False


# --- Argo Workflows: enhanced depends logic ---------------------------------------------------

RESULTS = ("Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned")
_TOKEN = re.compile(r"\s*(\(|\)|&&|\|\||!|[A-Za-z0-9][-A-Za-z0-9]*\.[A-Z][a-zA-Z]+|[A-Za-z0-9][-A-Za-z0-9]*)")


def depends_holds(expression: str, phases: Mapping[str, str]) -> bool:
    """Evaluate a DAG task's ``depends`` against the phases its dependencies ended in.

    argo-workflows workflow/controller/dag.go, evaluateDependsLogic: ``X.Succeeded`` is
    ``phase == Succeeded``, ``X.Skipped`` is ``phase == Skipped`` (a ``when`` that was false),
    ``X.Failed``/``X.Errored`` are Failed/Error; a bare ``X`` expands to
    ``(X.Succeeded || X.Skipped || X.Daemoned)`` (workflow/common/ancestry.go, expandDependency).
    ``phases`` uses the node phases Succeeded, Failed, Error, Skipped, Omitted.
    """
    tokens: list[str] = []
    pos = 0
    text = expression.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"cannot parse depends {expression!r} at {pos}")
        tokens.append(m.group(1))
        pos = m.end()

    def atom(tok: str) -> bool:
        if "." not in tok:
            return phases[tok] in ("Succeeded", "Skipped")
        task, result = tok.split(".", 1)
        if result not in RESULTS:
            raise ValueError(f"{tok}: not a task result Argo knows ({', '.join(RESULTS)})")
        return phases[task] == {"Errored": "Error"}.get(result, result)

    # expr := term ('||' term)*; term := factor ('&&' factor)*; factor := '!' factor | '(' expr ')' | atom
    def expr(i: int) -> tuple[bool, int]:
        value, i = term(i)
        while i < len(tokens) and tokens[i] == "||":
            right, i = term(i + 1)
            value = value or right
        return value, i

    def term(i: int) -> tuple[bool, int]:
        value, i = factor(i)
        while i < len(tokens) and tokens[i] == "&&":
            right, i = factor(i + 1)
            value = value and right
        return value, i

    def factor(i: int) -> tuple[bool, int]:
        if tokens[i] == "!":
            value, i = factor(i + 1)
            return not value, i
        if tokens[i] == "(":
            value, i = expr(i + 1)
            if tokens[i] != ")":
                raise ValueError(f"unbalanced parentheses in {expression!r}")
            return value, i + 1
        return atom(tokens[i]), i + 1

    value, end = expr(0)
    if end != len(tokens):
        raise ValueError(f"trailing tokens in {expression!r}: {tokens[end:]}")
    return value


def run_dag(
    tasks: Mapping[str, Mapping[str, Any]],
    outcome: Mapping[str, str],
    when: Mapping[str, bool] | None = None,
) -> dict[str, str]:
    """The phase each task of a DAG ends in, given how the tasks that run end.

    ``tasks`` are the rendered DAG tasks by name (in dependency order, as rendered); ``outcome``
    is the phase of each task that runs (default Succeeded); ``when`` the value of tasks' ``when``
    conditions (default true). dag.go: a task whose ``depends`` is false is Omitted; one whose
    ``when`` is false is Skipped; otherwise it runs.
    """
    phases: dict[str, str] = {}
    for name, task in tasks.items():
        if task.get("depends") and not depends_holds(task["depends"], phases):
            phases[name] = "Omitted"
        elif "when" in task and not (when or {}).get(name, True):
            phases[name] = "Skipped"
        else:
            phases[name] = outcome.get(name, "Succeeded")
    return phases


# --- Argo Events: data filters ----------------------------------------------------------------


def gjson_string(document: Any, path: str) -> str | None:
    """``gjson.GetBytes(payload, path).String()`` for the dotted paths the Sensor uses.

    A string gives itself, a number or boolean its JSON text, an array or object its raw JSON
    (gjson Result.String); a numeric segment indexes an array. None when the path is missing.
    """
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    if isinstance(node, str):
        return node
    return json.dumps(node, separators=(",", ":"))


def data_filter_passes(filters: list[Mapping[str, Any]], event_data: Any) -> bool:
    """Whether an event passes a Sensor's ``filters.data`` (type string, default comparator, AND).

    argo-events pkg/sensors/dependencies/filter.go, filterData: the value at ``path`` must exist;
    for type string, each listed value is compiled with Go's ``regexp.Compile`` and tried with
    ``exp.Match`` (unanchored: a match anywhere passes); one matching value is enough.
    Python's ``re.search`` agrees with RE2 on the patterns used here.
    """
    for f in filters:
        assert f.get("type") == "string" and f.get("comparator", "=") in ("=", ""), f
        value = gjson_string(event_data, f["path"])
        if value is None:
            return False
        if not any(re.search(pattern, value) for pattern in f["value"]):
            return False
    return True

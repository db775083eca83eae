"""Argo Events: a GitHub webhook EventSource and the Sensor that submits ``pr-validation``.

GitHub signs each delivery with the webhook secret (a Secret, by reference); the EventSource
verifies it. The Sensor keeps ``pull_request`` events of this repository whose action is
``opened``, ``synchronize`` or ``reopened`` (anchored regular expressions: exactly these) and creates a Workflow from the ``pr-validation``
template with the repository, pull request number, head SHA and base branch.

The payload of a ``pull_request`` event carries no file list, so "touches ``experiments/`` or
``gitops/sites/``" cannot be a Sensor filter; the workflow's checkout step decides it from git
and skips validation (and stays silent on the pull request) when nothing relevant changed.

No API token is given to the EventSource, so it never creates or edits webhooks on GitHub: the
repository admin adds the webhook once (docs/workflows.md).
"""

from __future__ import annotations

from typing import Any

from hera.events import models as ev
from hera.events.models.io.k8s.api.core.v1 import SecretKeySelector, ServicePort
from hera.events.models.io.k8s.apimachinery.pkg.apis.meta.v1 import ObjectMeta
from hera.events.models.io.k8s.apimachinery.pkg.util.intstr import IntOrString

from pipelines.render.yamlout import dump
from pipelines.workflows import pr_validation, rbac
from pipelines.workflows.settings import PipelineSettings
from pipelines.workflows.steps import MANAGED_LABELS

API_VERSION = "argoproj.io/v1alpha1"
EVENT_SOURCE = "sonic-github"
EVENT_NAME = "pull-requests"
SENSOR = "sonic-pr-validation"
PORT = 12000
ENDPOINT = "/github"
ACTIONS = ("opened", "synchronize", "reopened")
# pr-validation's parameters, in the order of the submitted Workflow's arguments, and the
# field of the webhook payload each is taken from.
PARAMETERS = (
    ("repository", "body.repository.full_name"),
    ("pr-number", "body.pull_request.number"),
    ("head-sha", "body.pull_request.head.sha"),
    ("base-ref", "body.pull_request.base.ref"),
)


def _meta(name: str, settings: PipelineSettings) -> ObjectMeta:
    return ObjectMeta(name=name, namespace=settings.namespace, labels=dict(MANAGED_LABELS))


def event_source(settings: PipelineSettings) -> ev.EventSource:
    owner, name = settings.repository.split("/")
    # Without an API token Argo Events never registers the hook; ``url`` documents where the
    # EventSource's Service listens (sites expose it through their own ingress).
    url = f"http://{EVENT_SOURCE}-eventsource-svc.{settings.namespace}.svc:{PORT}{ENDPOINT}"
    github = ev.GithubEventSource(
        repositories=[ev.OwnedRepositories(owner=owner, names=[name])],
        events=["pull_request"],
        webhook=ev.WebhookContext(endpoint=ENDPOINT, method="POST", port=str(PORT), url=url),
        webhook_secret=SecretKeySelector(name=settings.webhook_secret.name, key=settings.webhook_secret.key),
        content_type="json",
        insecure=False,
        active=True,
    )
    return ev.EventSource(
        metadata=_meta(EVENT_SOURCE, settings),
        spec=ev.EventSourceSpec(
            service=ev.Service(ports=[ServicePort(port=PORT, target_port=IntOrString(PORT))]),
            github={EVENT_NAME: github},
        ),
    )


def workflow_resource(settings: PipelineSettings) -> dict[str, Any]:
    """The Workflow the Sensor creates; its argument values are filled from the event."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {
            "generateName": f"{pr_validation.NAME}-",
            "namespace": settings.namespace,
            "labels": dict(MANAGED_LABELS),
        },
        "spec": {
            "workflowTemplateRef": {"name": pr_validation.NAME},
            "arguments": {"parameters": [{"name": p, "value": ""} for p, _ in PARAMETERS]},
        },
    }


_REGEXP_SPECIAL = frozenset("\\.+*?()|[]{}^$")


def exactly(text: str) -> str:
    """A Go regular expression matching ``text`` and nothing else.

    A Sensor's string data filter is a regular expression tried with Go's unanchored
    ``regexp.Match`` (argo-events pkg/sensors/dependencies/filter.go, filterData): the value
    ``pull_request`` also passes ``pull_request_review``, and a repository name passes any name
    containing it. Anchored and escaped, each value means exactly itself.
    """
    return "^" + "".join(f"\\{c}" if c in _REGEXP_SPECIAL else c for c in text) + "$"


def sensor(settings: PipelineSettings) -> ev.Sensor:
    dependency = "pull-request"
    filters = ev.EventDependencyFilter(
        data=[
            # GithubEventData.Headers is Go's http.Header, a list per name: element 0 is the value
            # (a whole list would be matched as its JSON text, '["pull_request"]').
            ev.DataFilter(path="headers.X-Github-Event.0", type="string", value=[exactly("pull_request")]),
            ev.DataFilter(path="body.action", type="string", value=[exactly(a) for a in ACTIONS]),
            ev.DataFilter(
                path="body.repository.full_name", type="string", value=[exactly(settings.repository)]
            ),
        ],
    )
    trigger = ev.Trigger(
        template=ev.TriggerTemplate(
            name=f"submit-{pr_validation.NAME}",
            k8s=ev.StandardK8STrigger(
                operation="create",
                # Inline (a string) rather than ``resource``: the same bytes in every tool, hera's
                # models included, and the Sensor fills ``dest`` paths in it all the same.
                source=ev.ArtifactLocation(inline=dump(workflow_resource(settings))),
                parameters=[
                    ev.TriggerParameter(
                        src=ev.TriggerParameterSource(dependency_name=dependency, data_key=key),
                        dest=f"spec.arguments.parameters.{i}.value",
                    )
                    for i, (_, key) in enumerate(PARAMETERS)
                ],
            ),
        ),
        # Acknowledge the event only once the Workflow exists, so a failed create is redelivered.
        at_least_once=True,
    )
    return ev.Sensor(
        metadata=_meta(SENSOR, settings),
        spec=ev.SensorSpec(
            template=ev.Template(service_account_name=rbac.SENSOR_SA),
            dependencies=[
                ev.EventDependency(
                    name=dependency, event_source_name=EVENT_SOURCE, event_name=EVENT_NAME, filters=filters
                )
            ],
            triggers=[trigger],
        ),
    )


def as_manifest(obj: ev.EventSource | ev.Sensor) -> dict[str, Any]:
    """hera's Argo Events models carry no apiVersion/kind; a manifest needs both."""
    body: dict[str, Any] = obj.model_dump(by_alias=True, exclude_none=True, mode="json")
    return {"apiVersion": API_VERSION, "kind": type(obj).__name__, **body}


def objects(settings: PipelineSettings) -> list[dict[str, Any]]:
    """EventSource, Sensor and the Sensor's ServiceAccount and Role."""
    return [
        as_manifest(event_source(settings)),
        as_manifest(sensor(settings)),
        *rbac.sensor_access(settings.namespace),
    ]

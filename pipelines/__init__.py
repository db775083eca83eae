"""SONIC GitOps: render, build, deploy and check ML inference-as-a-service stacks (Triton + Envoy + KEDA)."""

__version__ = "0.1.0"

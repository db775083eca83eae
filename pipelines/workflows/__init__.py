"""The pipelines that run this repository on Argo Workflows and Argo Events, defined with Hera.

One module per object (``pr_validation``, ``build_model_repository``, ``rollout``,
``scheduled_validation``, ``events``), the building blocks they share (``steps``, ``rbac``,
``settings``, ``controller``) and the writer of ``gitops/workflows/`` (``files``). Definitions
only: what the steps' ``sonic`` subcommands do at run time lives in :mod:`pipelines.ops`, which
this package never imports (an import-linter contract in pyproject.toml). See docs/workflows.md.
"""

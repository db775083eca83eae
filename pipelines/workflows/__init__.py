"""The pipelines that run this repository on Argo Workflows and Argo Events, defined with Hera.

One module per object (``pr_validation``, ``build_model_repository``, ``rollout``,
``scheduled_validation``, ``events``), the building blocks they share (``steps``, ``rbac``,
``settings``), the renderer of ``gitops/workflows/`` (``render``), and the logic behind the
steps' ``sonic`` subcommands: ``gitrepo`` (checkout, publish, revert), ``github`` (commit
statuses, the bot's comment), ``pr_summary``, ``argocd`` (wait for sync and health),
``pushgateway``, ``check_runner`` and ``verify_rendered``. See docs/workflows.md.
"""

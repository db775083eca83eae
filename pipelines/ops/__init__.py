"""What the pipeline steps do at run time: the clients and operations behind their ``sonic`` subcommands.

``git`` (checkout, publish, revert with the real ``git``), ``github`` (commit statuses, the bot's
comment), ``pr_summary`` (that comment's text), ``argocd_wait`` (wait for an Application's sync
and health), ``pushgateway`` (push a scheduled check's result), ``check_runner`` (run
``sonic check`` and keep its report), ``verify_rendered`` (the real tools over a fresh render),
``rollout_target`` (which Application, endpoint and directory a rollout acts on; its commit
messages) and ``errors`` (a remote call's failure, transient or not).

The Hera definitions that run these steps are in :mod:`pipelines.workflows`; the two packages
do not import each other (pyproject.toml, import-linter). See docs/workflows.md.
"""

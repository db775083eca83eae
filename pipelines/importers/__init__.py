"""Importers: other tools' configuration -> this project's deployment format, with a report.

``supersonic``: SuperSONIC Helm values files (chart 0.3.x), ``sonic import supersonic``.
"""

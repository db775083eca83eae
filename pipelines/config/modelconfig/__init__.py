"""Triton model configurations, as validation and the model repository build both need them.

``pbtxt`` (``config.pbtxt`` generated with protobuf, or parsed from a supplied file), ``where``
(a config field -> the place a person edits), ``configcheck`` (a ``ModelConfig`` on its own and
against the sites and the declaration), ``onnxcheck`` (against the ONNX graph) and
``onnxruntime_versions`` (which ONNX Runtime each Triton release ships). Pure functions of typed
configuration and file bytes: ``sonic validate`` runs them at pull-request time
(:mod:`pipelines.config.modelfiles`) and ``sonic build-models`` again at build time
(:mod:`pipelines.modelrepo.build`), which is why they sit in the configuration layer
(docs/architecture.md).
"""

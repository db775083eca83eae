"""Run a deployment on one machine with real Triton, Envoy and Prometheus processes on 127.0.0.1.

``triton`` starts and stops the Triton server bundled in nvidia-pytriton on a model repository
(the ``--local`` snapshot of ``sonic build-models``).
"""

"""Run a deployment on one machine with real Triton, Envoy and Prometheus processes on 127.0.0.1.

``stack``       up / status / down of a whole local stack (``sonic local``), state in state.json
``triton``      the Triton server bundled in nvidia-pytriton: install, environment, command line
``envoy``       Envoy running the rendered bootstrap with loopback endpoints (and local JWKS)
``prometheus``  Prometheus running the rendered scrape jobs and rules with static targets
``processes``   process groups, readiness waits with timeouts, free ports
``state``       what a running stack is made of, readable by a later ``status`` or ``down``
"""

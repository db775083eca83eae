"""The Envoy data plane of one deployment at one site, rendered as data (never a template).

The bootstrap (:func:`pipelines.render.envoy.bootstrap.envoy_config`) is pure and deterministic:
the typed configuration in, the complete Envoy v3 bootstrap out (a dict;
:func:`~pipelines.render.envoy.bootstrap.envoy_yaml` dumps it). The same function renders the
ConfigMap that runs in the cluster (Triton reached through its headless Service) and the config of
the local stack (explicit ``endpoints`` on 127.0.0.1). Design and the SuperSONIC defects each part
fixes: ``docs/envoy.md``.

One module per part of the result::

    bootstrap   node, admin (127.0.0.1:admin_port only, never reachable from outside the pod),
                the overload manager's process-wide connection cap; assembles the parts below
    listeners   grpc  listen_port: connection limit, connection token bucket, HTTP/2 connection
                      manager -> jwt_authn, local_ratelimit, admission gate (Lua), router;
                      routes: only the client gRPC methods (CLIENT_METHODS), all else 404
                stats stats_port: only GET /stats/prometheus and GET /ready, proxied to the admin
    clusters    triton: HTTP/2, LB policy, gRPC health checks, outlier detection, circuit
                breakers, retry budget; prometheus / jwks_<provider> / opentelemetry_collector /
                envoy_admin when needed
    gate        the admission gate: its Lua script, its route metadata, its Prometheus
    tracing     OpenTelemetry tracing of the connection manager
    proto       small builders of Envoy API messages the parts share (durations, typed configs)
    k8s         the Kubernetes objects that run it: Deployment, ConfigMap, Services, Ingress, PDB

The SuperSONIC-style baseline the benchmarks compare against is not here: bench/supersonic_envoy.py.
"""

"""``sonic site doctor``: is a live cluster ready for what the repository deploys to its site?

A site admin runs it before (and after) bootstrapping a site. It reads ``gitops/sites/<site>.yaml``
and the site's share of the committed tree (:mod:`pipelines.doctor.manifests`), then checks the
cluster, one module per concern, each a function returning typed findings
(:class:`~pipelines.doctor.result.Finding`) with what to do about every failure:

    version.py     Kubernetes inside kubernetes.minVersion..maxVersion
    apis.py        every kind the objects use (and the kinds controllers create) served at its version
    namespaces.py  granted namespaces exist and enforce Pod Security; Prometheus/ingress namespaces exist
    ingress.py     the site's IngressClass
    storage.py     StorageClasses and the claims pods mount
    secrets.py     the Secrets objects read and the site file promises
    gpus.py        nodes that take each GPU class's pods
    prometheus.py  Prometheus answers a query with the cluster's token, TLS verified
    argocd.py      Argo CD knows the destination server
    dryrun.py      a server-side dry-run apply of every object

:func:`~pipelines.doctor.runner.diagnose` runs them in that order. Only ``cluster.py`` talks to
the API server (with the official ``kubernetes`` client, imported when a cluster is opened).
"""

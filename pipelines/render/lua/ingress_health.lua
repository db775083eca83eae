-- Argo CD health of networking.k8s.io/Ingress (argocd-cm key
-- resource.customizations.health.networking.k8s.io_Ingress; docs/gitops.md).
-- Every Ingress keeps Argo CD's built-in rule (gitops-engine pkg/health/health_ingress.go):
-- Healthy once status.loadBalancer.ingress lists an address, Progressing until then.
-- Ingresses that sonic-gitops renders for a site whose controller never publishes that
-- status carry sonic.fastml.org/ingress-status: unpublished; waiting for them would hold
-- the sync forever, so they are Healthy as soon as they exist.
local hs = {}
local annotations = obj.metadata.annotations
if annotations ~= nil and annotations["sonic.fastml.org/ingress-status"] == "unpublished" then
  hs.status = "Healthy"
  hs.message = "the ingress controller does not publish status.loadBalancer (site file: publishesStatus: false)"
  return hs
end
if obj.status ~= nil and obj.status.loadBalancer ~= nil and obj.status.loadBalancer.ingress ~= nil
    and #obj.status.loadBalancer.ingress > 0 then
  hs.status = "Healthy"
  return hs
end
hs.status = "Progressing"
hs.message = "waiting for the ingress controller to publish status.loadBalancer.ingress"
return hs

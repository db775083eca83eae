//go:build tools

// Package tools pins the Kubernetes control-plane binaries this repository's
// tests run; scripts/controlplane-tools.sh builds them with `go build`.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubectl/pkg/cmd"
)

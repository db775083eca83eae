//go:build tools

// Package tools pins the argo-workflows binaries the control-plane tests run;
// scripts/controlplane-tools.sh builds them with `go build`.
package tools

import (
	_ "github.com/argoproj/argo-workflows/v4/cmd/workflow-controller"
)

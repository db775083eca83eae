//go:build tools

// Package tools pins the keda binaries the control-plane tests run;
// scripts/controlplane-tools.sh builds them with `go build`.
package tools

import (
	_ "github.com/kedacore/keda/v2/cmd/operator"
	_ "github.com/kedacore/keda/v2/cmd/adapter"
)

//go:build tools

// Package tools pins the kwok binaries the control-plane tests run;
// scripts/controlplane-tools.sh builds them with `go build`.
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
)

//go:build tools

// Package tools pins the etcd binaries the control-plane tests run;
// scripts/controlplane-tools.sh builds them with `go build`.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)

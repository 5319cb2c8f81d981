//go:build tools

// Package tools records the Kubernetes commands devcluster/build.sh compiles,
// so that `go mod tidy` keeps their whole dependency graph in go.sum.
// It is never built itself (the "tools" build tag is never set).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl" // optional: devcluster/build.sh kubectl
)

package main

import (
	"runtime/debug"
	"strings"
)

// versionString names the upstream module versions this binary was built from.
func versionString() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "controlplane (no build info)"
	}
	parts := []string{"controlplane"}
	for _, dep := range info.Deps {
		switch dep.Path {
		case "k8s.io/kubernetes", "go.etcd.io/etcd/server/v3":
			parts = append(parts, dep.Path+"@"+dep.Version)
		}
	}
	return strings.Join(parts, " ")
}

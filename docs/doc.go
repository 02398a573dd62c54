// Package docs holds no code: its tests keep the examples in this
// directory's documents valid (ci.md's workflow and Kubernetes manifests).
package docs

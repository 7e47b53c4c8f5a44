// Package check holds the tests that load fleet export's output with the
// libraries of the orchestrators themselves: Kubernetes manifests decoded
// strictly into k8s.io/api's types and checked with apimachinery's
// validation helpers, Nomad jobs parsed with HashiCorp's HCL and checked
// against the part of Nomad's jobspec that the export writes.
//
// It is a module of its own so that fleet's build does not carry the
// Kubernetes API types and HCL: only these tests need them. Run it with
// scripts/test-export (scripts/test runs it too). Swarm stacks are checked
// in package export itself, by docker stack config.
package check

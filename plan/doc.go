// Package plan turns desired state (fleet.yaml) and live state (what the
// hosts run) into a plan: the actions, each with its reason, that make the
// one into the other.
//
// It does no I/O at all. Given the same inputs it returns the same plan,
// which is plain data: the human renderer and --json both read it, a saved
// plan is it serialised, and its tests are tables and golden files.
package plan

// Package integration holds fleet's end-to-end tests, run against a fleet of
// real hosts (sshd and dockerd each, in their own network namespaces) that
// the testfleet package brings up on this machine. The tests need root.
package integration

// Package executor reaches hosts and acts on them: one SSH connection per
// host per run, verified against known_hosts as OpenSSH would, reused for
// every command, file transfer and tunnel; and, over it, the host's Docker
// engine.
//
// Every operation returns each host's own outcome. No value from the files
// or a host is ever interpreted by a remote shell.
package executor

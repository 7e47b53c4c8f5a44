// Package inventory knows the hosts: it reads fleet's own inventory and
// Ansible's (INI or YAML, a file or a directory of them) as they are,
// resolves each host's address, port, user, key and jump chain the way
// OpenSSH would (~/.ssh/config included), and selects hosts by label, group
// or name with selectors such as "role=web,zone!=c".
//
// It contacts nobody: everything here is read from files, so
// "fleet validate" and "fleet inventory" work offline.
package inventory

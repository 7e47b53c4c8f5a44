// Package rollout carries a plan out: services in dependency order, hosts
// in parallel where the update policy allows, instances in batches gated on
// health checks, rollback when a batch fails, under a deploy lock, with each
// revision recorded on the hosts.
package rollout

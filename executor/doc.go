// Package executor reaches hosts and acts on them: one SSH connection per
// host per run, verified against known_hosts as OpenSSH would, reused for
// every command, file transfer and tunnel; and, over it, the host's Docker
// engine.
//
// # Connections
//
// An [Executor] holds a run's connections. [Executor.Connect] opens the
// connection to a [Target] on first use, through its jump hosts if it has
// any (each hop verified and authenticated like any host), and returns the
// same [Conn] afterwards. [Map] and [Each] run an operation on many hosts at
// once, bounded by [Options.Parallel], and return every host's own outcome
// with an [Errors] that names each failed host and what was being done.
//
// Nothing waits forever on a host. The SSH handshake is bounded as a whole,
// not only its TCP connect; keepalives find a peer that went silent and
// close its connection, which fails everything waiting on it; cancelling a
// context ends what it governs, and cancelling the context given to [New]
// closes every connection of the run. Sessions on one connection are capped
// below sshd's MaxSessions, so many concurrent operations queue rather than
// fail.
//
// # Faults
//
// A host that cannot be used fails with an error that says what is wrong in
// one wording per kind of fault, and what to check: a [ConnectError] for a
// host that could not be reached or logged in to (no answer, connection
// refused, no route, unknown name, sshd silent, keys refused), a
// [HostKeyError], or an [EngineDownError] for a host that answers over SSH
// while its Docker engine does not ([ErrEngineDown]). The same fault reads
// the same however it surfaced: a dial that timed out, a deadline, and the
// kernel's "no route to host" for a neighbour that never answered are all
// "no answer from ADDR". [FaultOf] names the fault behind an error, for the
// commands to say "unreachable" or "engine down". A failed pull is a
// [PullError]: which image, which registry, the likely cause, and the
// engine's own words last.
//
// # Host keys and keys
//
// Host keys are checked against the user's and the global known_hosts files
// (hashed names, [host]:port, several keys per host, @cert-authority,
// @revoked), under a [HostKeyPolicy]. Only the host key algorithms that
// known_hosts holds for a host are negotiated with it: a host that offers
// several key types is asked for the one its entry can verify. A changed key
// is refused under every policy but [Off], with a [HostKeyError] that names
// the host, both fingerprints and the known_hosts line to fix.
//
// Keys come from ssh-agent and identity files. When a target names identity
// files, only those keys are offered (the agent's copy first), so an agent
// holding many keys does not exhaust sshd's MaxAuthTries; an encrypted file
// has its passphrase asked once on the terminal, never without one.
//
// # Commands and values
//
// No value from the files, the environment or a host is ever interpreted by
// a remote shell. A command is an argument vector ([Cmd]); [Quote] turns each
// argument into one POSIX shell word, the only way a value becomes shell
// text. (SSH hands a command line to the login user's shell, which must
// therefore be a POSIX shell, as it is for every tool that drives hosts over
// SSH.) Secrets go elsewhere: container environments travel in Engine API
// request bodies, files through SFTP ([Conn.WriteFile]), written atomically
// with their mode set before any byte.
//
// # Files
//
// A host's files are reached over sshd's SFTP subsystem, found once per
// connection; on a host whose sshd offers none (hardened hosts disable it)
// every file operation is a constant POSIX shell script in an exec
// session, its paths quoted arguments and file content on its standard
// input. Both ways keep one contract: atomic replacement ([Conn.WriteFile]),
// exclusive creation of a whole file ([Conn.CreateFile]), fs.ErrNotExist
// and fs.ErrExist, contexts honoured even by a host that stalls, and the
// host's own clock for file times ([Conn.HostTime]).
//
// # The engine
//
// [Engine] drives a host's Docker engine through the Engine API, relayed by
// `docker system dial-stdio` in an exec session (through `sudo -n` when the
// target needs it). [Engine.State] reads a host's facts and every container
// of a project in one pipelined exchange (two on the first read of a host
// that has containers), parsed from the engine's JSON.
package executor

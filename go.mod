module github.com/fleetdeploy/fleet

go 1.25.0

require (
	github.com/alecthomas/kong v1.17.0
	github.com/pkg/sftp v1.13.12
	go.uber.org/goleak v1.3.0
	golang.org/x/crypto v0.54.0
	golang.org/x/term v0.45.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/kr/fs v0.1.0 // indirect
	github.com/kr/text v0.2.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
)

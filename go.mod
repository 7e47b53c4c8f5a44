module github.com/fleetdeploy/fleet

go 1.25.0

require (
	github.com/alecthomas/kong v1.17.0
	gopkg.in/yaml.v3 v3.0.1
)

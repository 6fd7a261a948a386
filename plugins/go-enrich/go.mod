module sluice.dev/go-enrich

// go:wasmexport needs Go 1.24; build.sh pins the toolchain it installs.
go 1.24

package main

import (
	"io"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/antaca/antaca/bench"
	"github.com/antaca/antaca/simulator"
)

// simCommand is `antaca sim`: seed, run, load and bureau (package simulator).
func simCommand(stdout, stderr io.Writer) *ffcli.Command {
	return simulator.CommandWithOutput(stdout, stderr)
}

// benchCommand is `antaca bench`: the end-to-end benchmark (package bench).
func benchCommand(stdout, stderr io.Writer) *ffcli.Command {
	return bench.CommandWithOutput(stdout, stderr)
}

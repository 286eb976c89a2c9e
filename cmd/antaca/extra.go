package main

import (
	"io"

	"github.com/peterbourgon/ff/v3/ffcli"
)

// extraCommands are the tools around the switch: the network simulator and
// the end-to-end benchmark.
func extraCommands(stdout, stderr io.Writer) []*ffcli.Command {
	return []*ffcli.Command{simCommand(stdout, stderr), benchCommand(stdout, stderr)}
}

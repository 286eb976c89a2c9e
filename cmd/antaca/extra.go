package main

import "github.com/peterbourgon/ff/v3/ffcli"

// extraCommands are the tools around the switch: the network simulator and
// the end-to-end benchmark.
func extraCommands() []*ffcli.Command {
	return []*ffcli.Command{simCommand(), benchCommand()}
}

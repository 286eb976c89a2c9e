package main

import (
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/antaca/antaca/bench"
	"github.com/antaca/antaca/simulator"
)

// simCommand is `antaca sim`: seed, run, load and bureau (package simulator).
func simCommand() *ffcli.Command { return simulator.Command() }

// benchCommand is `antaca bench`: the end-to-end benchmark (package bench).
func benchCommand() *ffcli.Command { return bench.Command() }

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/antaca/antaca/bench"
	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/simulator"
)

// simCommand is `antaca sim`: seed, run, load and bureau (package simulator).
func simCommand(stdout, stderr io.Writer) *ffcli.Command {
	return simulator.CommandWithOutput(stdout, stderr)
}

// benchCommand is `antaca bench`: the end-to-end benchmark (package bench)
// on a switch wired as `antaca serve` wires it.
func benchCommand(stdout, stderr io.Writer) *ffcli.Command {
	return bench.Command(stdout, stderr, startBenchSwitch)
}

// startBenchSwitch starts a switch for `antaca bench`: the production
// wiring on loopback ports, with a bootstrap admin of a random password
// (the run creates nothing over the admin API, but the switch starts as a
// deployment would).
func startBenchSwitch(ctx context.Context, c bench.SwitchConfig) (*bench.Switch, error) {
	cfg := app.DefaultConfig()
	cfg.RedisURL, cfg.DatabaseURL, cfg.KeyPrefix, cfg.KeysDir = c.RedisURL, c.DatabaseURL, c.KeyPrefix, c.KeysDir
	cfg.ISOAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	cfg.AdminUser, cfg.AdminPassword = "bench", hex.EncodeToString(pw)
	cfg.AnswerAfter, cfg.DebugAddr = c.AnswerAfter, c.DebugAddr
	cfg.WebhookAllowPrivate = c.WebhookAllowPrivate
	log := slog.New(slog.DiscardHandler)
	if c.LogFile != "" {
		f, err := os.OpenFile(c.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, fmt.Errorf("switch log: %w", err)
		}
		log = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	a.Start(context.WithoutCancel(ctx))
	return &bench.Switch{
		ISOAddr: a.ISOAddr(), Ledger: a.Ledger, Issuing: a.Issuing, LookupToken: a.Keys.LookupToken,
		Redis: a.Redis, Pool: a.Pool, Metrics: a.Registry, FlushJournal: a.FlushJournal, Shutdown: a.Shutdown,
	}, nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/antaca/antaca/api/pki"
)

// caCommand manages the partner CA: a partner is onboarded by sending its
// CSR and getting a certificate back; /secure verifies client certificates
// against this CA (ANTACA_PARTNER_CA) and takes the partner id from the CN.
func caCommand() *ffcli.Command {
	initFS := flag.NewFlagSet("antaca ca init", flag.ContinueOnError)
	initDir := initFS.String("dir", "./ca", "directory for ca.pem and ca-key.pem")
	initName := initFS.String("name", "Antaca partner CA", "CA subject common name")
	initYears := initFS.Int("years", 10, "validity in years")

	signFS := flag.NewFlagSet("antaca ca sign", flag.ContinueOnError)
	signDir := signFS.String("dir", "./ca", "directory holding ca.pem and ca-key.pem")
	signCSR := signFS.String("csr", "", "the partner's CSR (PEM); its CN must be the partner id")
	signOut := signFS.String("out", "", "where to write the certificate (default: stdout)")
	signDays := signFS.Int("days", 365, "validity in days")

	srvFS := flag.NewFlagSet("antaca ca server-cert", flag.ContinueOnError)
	srvDir := srvFS.String("dir", "./ca", "directory holding ca.pem and ca-key.pem")
	srvHosts := srvFS.String("hosts", "localhost,127.0.0.1", "comma-separated DNS names and IPs")
	srvOut := srvFS.String("out", "./ca/server", "prefix of the written <out>.pem and <out>-key.pem")

	csrFS := flag.NewFlagSet("antaca ca partner-csr", flag.ContinueOnError)
	csrPartner := csrFS.String("partner", "", "partner id (becomes the CN)")
	csrOut := csrFS.String("out", "", "prefix of the written <out>.csr and <out>-key.pem (default: the partner id)")

	readCA := func(dir string) ([]byte, []byte, error) {
		cert, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
		if err != nil {
			return nil, nil, fmt.Errorf("reading CA certificate: %w", err)
		}
		key, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
		if err != nil {
			return nil, nil, fmt.Errorf("reading CA key: %w", err)
		}
		return cert, key, nil
	}
	return &ffcli.Command{
		Name:       "ca",
		ShortUsage: "antaca ca <init|sign|server-cert|partner-csr> [flags]",
		ShortHelp:  "partner CA: create it, sign partner CSRs, issue an HTTPS server certificate",
		FlagSet:    flag.NewFlagSet("antaca ca", flag.ContinueOnError),
		Exec:       func(context.Context, []string) error { return flag.ErrHelp },
		Subcommands: []*ffcli.Command{
			{
				Name: "init", ShortUsage: "antaca ca init [--dir ./ca]", ShortHelp: "create the partner CA", FlagSet: initFS,
				Exec: func(context.Context, []string) error {
					if _, err := os.Stat(filepath.Join(*initDir, "ca-key.pem")); err == nil {
						return errors.New("a CA already exists in " + *initDir + "; refusing to overwrite it")
					}
					cert, key, err := pki.NewCA(*initName, time.Duration(*initYears)*365*24*time.Hour)
					if err != nil {
						return err
					}
					if err := os.MkdirAll(*initDir, 0o700); err != nil {
						return err
					}
					if err := os.WriteFile(filepath.Join(*initDir, "ca.pem"), cert, 0o644); err != nil {
						return err
					}
					if err := os.WriteFile(filepath.Join(*initDir, "ca-key.pem"), key, 0o600); err != nil {
						return err
					}
					fmt.Printf("partner CA written to %s (set ANTACA_PARTNER_CA=%s)\n", *initDir, filepath.Join(*initDir, "ca.pem"))
					return nil
				},
			},
			{
				Name: "sign", ShortUsage: "antaca ca sign --csr partner.csr [--out partner.pem]", ShortHelp: "sign a partner CSR", FlagSet: signFS,
				Exec: func(context.Context, []string) error {
					if *signCSR == "" {
						return errors.New("--csr is required")
					}
					caCert, caKey, err := readCA(*signDir)
					if err != nil {
						return err
					}
					csr, err := os.ReadFile(*signCSR)
					if err != nil {
						return fmt.Errorf("reading CSR: %w", err)
					}
					cert, err := pki.SignCSR(caCert, caKey, csr, time.Duration(*signDays)*24*time.Hour)
					if err != nil {
						return err
					}
					if *signOut == "" {
						_, err = os.Stdout.Write(cert)
						return err
					}
					return os.WriteFile(*signOut, cert, 0o644)
				},
			},
			{
				Name: "server-cert", ShortUsage: "antaca ca server-cert [--hosts localhost] [--out ./ca/server]", ShortHelp: "issue an HTTPS server certificate from the CA", FlagSet: srvFS,
				Exec: func(context.Context, []string) error {
					caCert, caKey, err := readCA(*srvDir)
					if err != nil {
						return err
					}
					cert, key, err := pki.NewServerCert(caCert, caKey, strings.Split(*srvHosts, ","), 365*24*time.Hour)
					if err != nil {
						return err
					}
					if err := os.WriteFile(*srvOut+".pem", cert, 0o644); err != nil {
						return err
					}
					return os.WriteFile(*srvOut+"-key.pem", key, 0o600)
				},
			},
			{
				Name: "partner-csr", ShortUsage: "antaca ca partner-csr --partner ID", ShortHelp: "create a partner key and CSR (what a partner does on its side)", FlagSet: csrFS,
				Exec: func(context.Context, []string) error {
					if !pki.ValidPartnerID(*csrPartner) {
						return errors.New("--partner must be a valid partner id")
					}
					key, csr, err := pki.NewKeyAndCSR(*csrPartner)
					if err != nil {
						return err
					}
					out := *csrOut
					if out == "" {
						out = *csrPartner
					}
					if err := os.WriteFile(out+".csr", csr, 0o644); err != nil {
						return err
					}
					return os.WriteFile(out+"-key.pem", key, 0o600)
				},
			},
		},
	}
}

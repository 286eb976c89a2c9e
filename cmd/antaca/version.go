package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"
)

// versionLine says which build this is: the module version, the VCS
// revision it was built from (and whether the tree had uncommitted
// changes), the commit time and the Go toolchain, all from the build
// information Go embeds in the binary.
func versionLine() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return fmt.Sprintf("antaca (no build information) %s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
	return formatVersion(bi)
}

func formatVersion(bi *debug.BuildInfo) string {
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	s := map[string]string{}
	for _, kv := range bi.Settings {
		s[kv.Key] = kv.Value
	}
	parts := []string{"antaca", version}
	if rev := s["vcs.revision"]; rev != "" {
		parts = append(parts, "revision", rev)
		if s["vcs.modified"] == "true" {
			parts = append(parts, "(modified)")
		}
		if t := s["vcs.time"]; t != "" {
			parts = append(parts, "of", t)
		}
	} else {
		parts = append(parts, "revision unknown")
	}
	goos, goarch := s["GOOS"], s["GOARCH"]
	if goos == "" {
		goos, goarch = runtime.GOOS, runtime.GOARCH
	}
	parts = append(parts, "built with", bi.GoVersion, "for", goos+"/"+goarch)
	return strings.Join(parts, " ")
}

// versionCommand is `antaca version`; `antaca --version` prints the same.
func versionCommand(stdout io.Writer) *ffcli.Command {
	return &ffcli.Command{
		Name:       "version",
		ShortUsage: "antaca version",
		ShortHelp:  "print the version, VCS revision and Go version of this binary",
		FlagSet:    flag.NewFlagSet("antaca version", flag.ContinueOnError),
		Exec: func(context.Context, []string) error {
			_, err := fmt.Fprintln(stdout, versionLine())
			return err
		},
	}
}

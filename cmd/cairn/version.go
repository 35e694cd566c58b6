package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

func versionCommand() *command {
	return &command{
		name:    "version",
		summary: "print the version of cairn and of the Go toolchain that built it",
		doc: `
Prints the module version of this build (or "(devel)" for a build from a
work tree), the VCS revision when the build recorded one, and the Go
version and platform.`,
		example: `cairn version`,
		run: func(ctx context.Context, c *cli, inv *invocation) error {
			fmt.Fprintln(c.stdout, versionString())
			return nil
		},
	}
}

func versionString() string {
	v := "(devel)"
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" && modified {
			rev += "+modified"
		}
	}
	s := "cairn " + v
	if rev != "" {
		s += " (commit " + rev + ")"
	}
	return fmt.Sprintf("%s %s %s/%s", s, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionInfo is the version command's --json output.
type versionInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"` // VCS commit the binary was built from
	Modified  bool   `json:"modified,omitempty"` // built from a tree with uncommitted changes
	Go        string `json:"go"`
	Platform  string `json:"platform"`
	BPFObject string `json:"bpf_object"`
}

// buildVersion is the version to report: the one given with -ldflags, else
// what the go command embedded (the module version, or the VCS revision of
// a plain `go build` in a checkout), else "dev".
func buildVersion(ldflags string, bi *debug.BuildInfo, ok bool) string {
	if ldflags != "" && ldflags != "dev" {
		return ldflags
	}
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v // go install module@version, or a VCS-stamped pseudo-version
	}
	rev, modified := vcsInfo(bi)
	if rev == "" {
		return "dev"
	}
	v := "dev-" + rev[:min(len(rev), 12)]
	if modified {
		v += "-dirty"
	}
	return v
}

// vcsInfo is the revision and the modified flag `go build` embeds when it
// runs in a checkout (-buildvcs, on by default).
func vcsInfo(bi *debug.BuildInfo) (revision string, modified bool) {
	if bi == nil {
		return "", false
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	return revision, modified
}

func currentVersion() versionInfo {
	bi, ok := debug.ReadBuildInfo()
	v := buildVersion(version, bi, ok)
	rev, modified := vcsInfo(bi)
	return versionInfo{
		Version:  v,
		Revision: rev,
		Modified: modified,
		Go:       runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH,
		// The BPF object is generated and embedded with this build, so its
		// version is the binary's.
		BPFObject: v,
	}
}

func newVersionCmd() *cobra.Command {
	var of outFlags
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the fastpath version",
		Long: `Print the fastpath version, the VCS revision and Go toolchain it was built
with, and the build of the BPF object compiled into it (the object is
embedded in the binary, so it always matches the daemon). 'fastpath
--version' prints the first line only.

The version is the one given at build time (make sets it from git
describe); a plain 'go build' in a checkout reports the git revision Go
embeds, with "-dirty" for uncommitted changes.`,
		Example: `  fastpath version
  fastpath --version
  fastpath version -j`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := currentVersion()
			if of.asJSON() {
				return of.writeJSON(cmd.OutOrStdout(), v)
			}
			rev := v.Revision
			if rev == "" {
				rev = "unknown"
			} else if v.Modified {
				rev += " (modified)"
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "fastpath %s\nrevision:   %s\ngo:         %s %s\nbpf object: %s\n",
				v.Version, rev, v.Go, v.Platform, v.BPFObject)
			return err
		},
	}
	of.register(cmd, "p")
	return cmd
}

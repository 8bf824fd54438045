package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// versionInfo is the version command's --json output.
type versionInfo struct {
	Version   string `json:"version"`
	Go        string `json:"go"`
	Platform  string `json:"platform"`
	BPFObject string `json:"bpf_object"`
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the fastpath version",
		Long: `Print the fastpath version, the Go toolchain it was built with and the build
of the BPF object compiled into it (the object is embedded in the binary, so
it always matches the daemon).`,
		Example: `  fastpath version
  fastpath version --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := versionInfo{
				Version:  version,
				Go:       runtime.Version(),
				Platform: runtime.GOOS + "/" + runtime.GOARCH,
				// The BPF object is generated and embedded with this
				// build, so its version is the binary's.
				BPFObject: version,
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "fastpath %s\ngo:         %s %s\nbpf object: %s\n",
				v.Version, v.Go, v.Platform, v.BPFObject)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

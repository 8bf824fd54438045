package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newGenDistCmd writes what the package ships besides the binary that is
// made from the command tree itself: man pages and shell completions
// (scripts/package.sh). Hidden: it is for packagers, not operators.
func newGenDistCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "gen-dist DIR",
		Short:  "Write the man pages and shell completions into DIR (for packaging)",
		Hidden: true,
		Long: `Write DIR/man/man1/fastpath*.1 (one page per command, from the same help
text as --help) and DIR/completions/{fastpath.bash,_fastpath,fastpath.fish}.
The pages' date is $SOURCE_DATE_EPOCH when set, so builds are reproducible.`,
		Args: oneArg("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return genDist(cmd.Root(), args[0])
		},
	}
}

func genDist(root *cobra.Command, dir string) error {
	man := filepath.Join(dir, "man", "man1")
	comp := filepath.Join(dir, "completions")
	for _, d := range []string{man, comp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	var date *time.Time // cobra/doc: $SOURCE_DATE_EPOCH, else now
	if os.Getenv("SOURCE_DATE_EPOCH") == "" {
		d := time.Now().UTC()
		date = &d
	}
	root.DisableAutoGenTag = true // no "Auto generated" footer with a date in it
	manLong(root)
	hdr := &doc.GenManHeader{
		Section: "1",
		Date:    date,
		Source:  "fastpath " + currentVersion().Version,
		Manual:  "fastpath manual",
	}
	if err := doc.GenManTree(root, hdr, man); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	return errors.Join(
		writeCompletion(filepath.Join(comp, "fastpath.bash"), func(w io.Writer) error { return root.GenBashCompletionV2(w, true) }),
		writeCompletion(filepath.Join(comp, "_fastpath"), root.GenZshCompletion),
		writeCompletion(filepath.Join(comp, "fastpath.fish"), func(w io.Writer) error { return root.GenFishCompletion(w, true) }),
	)
}

// manLong prepares the help texts for cobra/doc, which reads them as
// Markdown: the indented blocks of --help (tables of columns, reasons,
// lab drawings) become preformatted blocks instead of reflowed text.
func manLong(cmd *cobra.Command) {
	lines := strings.Split(cmd.Long, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "  ") {
			lines[i] = "  " + l
		}
	}
	cmd.Long = strings.Join(lines, "\n")
	for _, c := range cmd.Commands() {
		manLong(c)
	}
}

func writeCompletion(path string, gen func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := gen(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

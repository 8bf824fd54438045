package difftest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// binaryEnv names a prebuilt fastpath binary to test instead of building
// ./cmd/fastpath (as in test/e2e).
const binaryEnv = "FASTPATH_E2E_BINARY"

// testBinary is set once by TestMain: the binary under test, or why the
// tests skip.
var testBinary struct {
	path string
	skip string
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if os.Geteuid() != 0 {
		testBinary.skip = "skipping: the differential tests need root (network namespaces, BPF); run `sudo go test ./test/difftest/`"
		return m.Run()
	}
	if testing.Short() {
		testBinary.skip = "skipping the differential tests in -short mode"
		return m.Run()
	}
	if bin := os.Getenv(binaryEnv); bin != "" {
		testBinary.path = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "fastpath-difftest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "difftest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, "difftest:", err)
		return 1
	}
	bin := filepath.Join(dir, "fastpath")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/fastpath")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "difftest: go build ./cmd/fastpath in %s: %v\n%s", root, err, strings.TrimSpace(string(out)))
		return 1
	}
	testBinary.path = bin
	return m.Run()
}

func requireBinary(t *testing.T) string {
	t.Helper()
	if testBinary.skip != "" {
		t.Skip(testBinary.skip)
	}
	return testBinary.path
}

package e2e

import (
	"context"
	"errors"
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
// ./cmd/fastpath (e.g. a release build).
const binaryEnv = "FASTPATH_E2E_BINARY"

// buildTimeout bounds `go build` of the binary (mostly cached).
const buildTimeout = 3 * time.Minute

// testBinary is set once by TestMain and only read by the tests: the
// fastpath binary under test, or why the tests skip.
var testBinary struct {
	path string
	skip string
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	flag.Parse() // for testing.Verbose; m.Run would parse them anyway
	if os.Geteuid() != 0 {
		testBinary.skip = "skipping: the e2e tests need root (network namespaces, BPF); run `sudo go test ./test/e2e/`"
		return m.Run()
	}
	if bin := os.Getenv(binaryEnv); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %s: %v\n", binaryEnv, err)
			return 1
		}
		testBinary.path = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "fastpath-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	bin, err := buildBinary(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	if testing.Verbose() {
		fmt.Printf("e2e: built %s in %s\n", bin, time.Since(start).Round(time.Millisecond))
	}
	testBinary.path = bin
	return m.Run()
}

// buildBinary builds ./cmd/fastpath of this module into dir.
func buildBinary(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("find the go tool: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	bin := filepath.Join(dir, "fastpath")
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "./cmd/fastpath")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/fastpath in %s: %w\n%s", root, err, out)
	}
	return bin, nil
}

// moduleRoot is the directory of this module's go.mod: from `go env GOMOD`,
// or two levels up from this package's directory.
func moduleRoot() (string, error) {
	if out, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", errors.New("find module root: no go.mod via `go env GOMOD` or ../..")
	}
	return root, nil
}

// requireBinary skips the test unless TestMain built the binary as root.
func requireBinary(t *testing.T) string {
	t.Helper()
	if testBinary.skip != "" {
		t.Skip(testBinary.skip)
	}
	return testBinary.path
}

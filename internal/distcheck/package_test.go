package distcheck

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The Debian package as make deb builds it (scripts/package.sh): its
// control data, its files, that it installs and removes (into a scratch
// root, so the host is untouched), that systemd accepts its unit and that
// man renders its pages.
func TestDebianPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and a package: not in -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("installs the package with dpkg --root: needs root")
	}
	for _, tool := range []string{"dpkg-deb", "dpkg", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := buildBinary(ctx, t)
	out := filepath.Join(dir, "dist")
	deb := strings.TrimSpace(run(ctx, t, "", nil, "../../scripts/package.sh", "deb", bin, out))
	arch := strings.TrimSpace(run(ctx, t, "", nil, "go", "env", "GOARCH"))
	if want := filepath.Join(out, "fastpath_1.2.3~rc1_"+arch+".deb"); deb != want {
		t.Fatalf("package.sh deb made %q, want %q", deb, want)
	}

	info := run(ctx, t, "", nil, "dpkg-deb", "--field", deb, "Package", "Version", "Architecture")
	if want := "Package: fastpath\nVersion: 1.2.3~rc1\nArchitecture: " + arch + "\n"; info != want {
		t.Errorf("control fields:\n%s\nwant\n%s", info, want)
	}
	if conf := run(ctx, t, "", nil, "dpkg-deb", "--info", deb, "conffiles"); conf != "/etc/fastpath/fastpath.yaml\n" {
		t.Errorf("conffiles = %q, want the example config", conf)
	}

	contents := map[string]string{} // path -> mode and owner
	for _, line := range strings.Split(run(ctx, t, "", nil, "dpkg-deb", "--contents", deb), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 {
			contents[strings.TrimPrefix(f[5], ".")] = f[0] + " " + f[1]
		}
	}
	want := map[string]string{
		"/usr/bin/fastpath":                                  "-rwxr-xr-x root/root",
		"/usr/lib/systemd/system/fastpath.service":           "-rw-r--r-- root/root",
		"/etc/fastpath/fastpath.yaml":                        "-rw-r--r-- root/root",
		"/usr/share/bash-completion/completions/fastpath":    "-rw-r--r-- root/root",
		"/usr/share/zsh/vendor-completions/_fastpath":        "-rw-r--r-- root/root",
		"/usr/share/fish/vendor_completions.d/fastpath.fish": "-rw-r--r-- root/root",
		"/usr/share/man/man1/fastpath.1.gz":                  "-rw-r--r-- root/root",
		"/usr/share/man/man1/fastpath-run.1.gz":              "-rw-r--r-- root/root",
		"/usr/share/man/man1/fastpath-flows.1.gz":            "-rw-r--r-- root/root",
		"/usr/share/man/man1/fastpath-lab-down.1.gz":         "-rw-r--r-- root/root",
		"/usr/share/doc/fastpath/operations.md":              "-rw-r--r-- root/root",
		"/":                                                  "drwxr-xr-x root/root",
	}
	for path, mode := range want {
		if got, ok := contents[path]; !ok || got != mode {
			t.Errorf("package: %s is %q, want %q", path, got, mode)
		}
	}
	for path := range contents {
		if strings.Contains(path, "gen-dist") || strings.HasPrefix(path, "/usr/local") {
			t.Errorf("package holds %s", path)
		}
	}

	// Install, then remove (the edited config stays), then purge, in a
	// scratch root: the maintainer scripts see DPKG_ROOT and leave the
	// host's systemd alone.
	root := filepath.Join(dir, "root")
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dpkg := func(args ...string) string {
		return run(ctx, t, "", nil, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless"}, args...)...)
	}
	dpkg("--install", deb)
	status := dpkg("--status", "fastpath")
	if !strings.Contains(status, "Status: install ok installed") || !strings.Contains(status, "Conffiles:\n /etc/fastpath/fastpath.yaml ") {
		t.Errorf("after install:\n%s", status)
	}
	installed := filepath.Join(root, "usr/bin/fastpath")
	if v := run(ctx, t, "", nil, installed, "--version"); v != "fastpath v1.2.3-rc1\n" {
		t.Errorf("installed fastpath --version = %q", v)
	}
	conf := filepath.Join(root, "etc/fastpath/fastpath.yaml")
	if out := run(ctx, t, "", nil, installed, "check-config", conf); !strings.Contains(out, ": ok (2 interfaces)") {
		t.Errorf("the example config: %s", out)
	}

	unit := filepath.Join(root, "usr/lib/systemd/system/fastpath.service")
	verifyUnit(ctx, t, unit, "/usr/bin/fastpath", installed)
	renderMan(ctx, t, filepath.Join(root, "usr/share/man/man1/fastpath-run.1.gz"),
		"fastpath-run - Run the fastpath daemon in the foreground", "--keep-datapath")
	pages, _ := filepath.Glob(filepath.Join(root, "usr/share/man/man1/*.1.gz"))
	if len(pages) < 10 {
		t.Errorf("only %d man pages: %v", len(pages), pages)
	}
	for _, page := range pages {
		name := strings.TrimSuffix(filepath.Base(page), ".1.gz")
		renderMan(ctx, t, page, name+" - ") // every page: no groff warnings, a NAME line
	}

	edited := []byte("version: 1\ninterfaces:\n  - name: wan0\n")
	if err := os.WriteFile(conf, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	dpkg("--remove", "fastpath")
	if _, err := os.Stat(installed); !os.IsNotExist(err) {
		t.Errorf("after remove, %s: %v", installed, err)
	}
	if b, err := os.ReadFile(conf); err != nil || !slices.Equal(b, edited) {
		t.Errorf("remove must keep the edited conffile: %q, %v", b, err)
	}
	dpkg("--purge", "fastpath")
	if _, err := os.Stat(conf); !os.IsNotExist(err) {
		t.Errorf("after purge, %s: %v", conf, err)
	}
}

// make install PREFIX=... puts the same files under the prefix, with the
// unit's paths rewritten, and keeps a config that is already there.
func TestInstallPrefix(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary: not in -short")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go not installed")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := buildBinary(ctx, t)
	prefix := filepath.Join(dir, "opt")
	run(ctx, t, "", nil, "../../scripts/package.sh", "install", bin, prefix)
	for _, p := range []string{"bin/fastpath", "lib/systemd/system/fastpath.service", "etc/fastpath/fastpath.yaml",
		"share/man/man1/fastpath-stats.1.gz", "share/bash-completion/completions/fastpath"} {
		if _, err := os.Stat(filepath.Join(prefix, p)); err != nil {
			t.Errorf("make install: %v", err)
		}
	}
	unit, err := os.ReadFile(filepath.Join(prefix, "lib/systemd/system/fastpath.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ExecStart=" + prefix + "/bin/fastpath run -c ${FASTPATH_CONFIG}",
		"Environment=FASTPATH_CONFIG=" + prefix + "/etc/fastpath/fastpath.yaml"} {
		if !strings.Contains(string(unit), want+"\n") && !strings.Contains(string(unit), want+" ") {
			t.Errorf("installed unit lacks %q", want)
		}
	}
	if strings.Contains(string(unit), "/usr/bin/fastpath") {
		t.Errorf("installed unit still names /usr/bin/fastpath")
	}
	conf := filepath.Join(prefix, "etc/fastpath/fastpath.yaml")
	if err := os.WriteFile(conf, []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(ctx, t, "", nil, "../../scripts/package.sh", "install", bin, prefix)
	if b, _ := os.ReadFile(conf); string(b) != "mine\n" {
		t.Errorf("a second make install replaced the config: %q", b)
	}
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildBinary builds fastpath once for the package tests, as make build
// does (static), with version v1.2.3-rc1.
func buildBinary(ctx context.Context, t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fastpath-distcheck-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "fastpath")
		cmd := exec.CommandContext(ctx, "go", "build", "-ldflags", "-X main.version=v1.2.3-rc1", "-o", builtBin, "../../cmd/fastpath")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// verifyUnit runs systemd-analyze verify on the unit at path, its binary
// path replaced by an executable that exists here.
func verifyUnit(ctx context.Context, t *testing.T, path, binary, stand string) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed (scripts/deps.sh runtime installs it); unit not verified")
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "fastpath.service")
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(data), binary, stand)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, analyze, "verify", "--man=no", copyPath).CombinedOutput()
	if err != nil || strings.Contains(string(out), copyPath) {
		t.Errorf("systemd-analyze verify %s: %v\n%s", path, err, out)
	}
}

// renderMan checks that man renders the page without warnings and that the
// text holds each of want.
func renderMan(ctx context.Context, t *testing.T, page string, want ...string) {
	t.Helper()
	if _, err := exec.LookPath("man"); err != nil {
		t.Log("man not installed (scripts/deps.sh runtime installs it); page not rendered")
		return
	}
	cmd := exec.CommandContext(ctx, "man", "--warnings", "-l", page)
	cmd.Env = append(os.Environ(), "MANPAGER=cat", "PAGER=cat", "MANWIDTH=100", "LC_ALL=C.UTF-8")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Errorf("man -l %s: %v\n%s", page, err, stderr.String())
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("man -l %s lacks %q:\n%s", page, w, out)
		}
	}
}

// run runs a command in dir with extra environment and returns its
// standard output; a failure fails the test with both outputs.
func run(ctx context.Context, t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

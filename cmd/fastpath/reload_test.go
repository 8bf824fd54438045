package main

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/fastpath-router/fastpath/internal/api"
)

func reloadBackend(res *api.ReloadResult, err error) *fakeBackend {
	return &fakeBackend{reload: func(context.Context) (*api.ReloadResult, error) { return res, err }}
}

func TestReload(t *testing.T) {
	res := &api.ReloadResult{Changed: true, Actions: []string{"attach r2 (offload, xdp)", "detach r1"}}
	sock := serve(t, reloadBackend(res, nil))

	code, out, errOut := run(t, "reload", "--socket", sock)
	want := "reloaded, 2 actions:\n  attach r2 (offload, xdp)\n  detach r1\n"
	if code != 0 || out != want || errOut != "" {
		t.Errorf("reload: code %d, stderr %q\n%s\nwant\n%s", code, errOut, out, want)
	}

	code, out, _ = run(t, "reload", "--socket", sock, "--json")
	var got api.ReloadResult
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 || !reflect.DeepEqual(&got, res) {
		t.Errorf("reload --json: code %d, %v\n%s", code, err, out)
	}
}

func TestReloadNoChange(t *testing.T) {
	sock := serve(t, reloadBackend(&api.ReloadResult{}, nil))
	code, out, errOut := run(t, "reload", "--socket", sock)
	if code != 0 || out != "no change\n" || errOut != "" {
		t.Errorf("reload: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = run(t, "reload", "--socket", sock, "--json")
	if code != 0 || out != "{\"changed\":false,\"actions\":[]}\n" {
		t.Errorf("reload --json: code %d\n%s", code, out)
	}
}

func TestReloadInvalidConfig(t *testing.T) {
	problems := &api.ConfigError{Err: errors.Join(
		errors.New(`/etc/fp.yaml:4: interfaces[0].mode (r0): unknown mode "ofload"`),
		errors.New(`/etc/fp.yaml:5: interfaces[0].atach: unknown field`))}
	sock := serve(t, reloadBackend(nil, problems))

	code, out, errOut := run(t, "reload", "--socket", sock)
	want := `fastpath: /etc/fp.yaml:4: interfaces[0].mode (r0): unknown mode "ofload"
fastpath: /etc/fp.yaml:5: interfaces[0].atach: unknown field
reload refused: nothing was changed, the daemon keeps running as it was
`
	if code != 2 || out != "" || errOut != want {
		t.Errorf("reload: code %d, stdout %q\nstderr %s\nwant   %s", code, out, errOut, want)
	}

	code, out, errOut = run(t, "reload", "--socket", sock, "--json")
	var got reloadRefused
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 2 || errOut != "" ||
		got.Error != problems.Error() || len(got.Errors) != 2 || got.Errors[1] != "/etc/fp.yaml:5: interfaces[0].atach: unknown field" {
		t.Errorf("reload --json: code %d, stderr %q, %v\n%s", code, errOut, err, out)
	}
}

func TestReloadFailure(t *testing.T) {
	sock := serve(t, reloadBackend(nil, errors.New("attach r2: no such device")))
	code, out, errOut := run(t, "reload", "--socket", sock)
	if code != 1 || out != "" || errOut != "fastpath: daemon: attach r2: no such device (HTTP 500)\n" {
		t.Errorf("reload: code %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestReloadPartialFailure(t *testing.T) {
	res := &api.ReloadResult{Changed: true, Actions: []string{"detach r1 (removed from the config)", "add r2: failed: no such device"}}
	sock := serve(t, reloadBackend(res, errors.New("attach r2: no such device")))
	code, out, errOut := run(t, "reload", "--socket", sock)
	want := "reloaded, 2 actions:\n  detach r1 (removed from the config)\n  add r2: failed: no such device\n"
	if code != 1 || out != want || errOut != "fastpath: daemon: attach r2: no such device (HTTP 500)\n" {
		t.Errorf("reload: code %d, stderr %q\n%s\nwant\n%s", code, errOut, out, want)
	}
	// -j carries the error too, as the API's answer does.
	code, out, _ = run(t, "reload", "--socket", sock, "-j")
	want = `{"changed":true,"actions":["detach r1 (removed from the config)","add r2: failed: no such device"],"error":"daemon: attach r2: no such device (HTTP 500)"}` + "\n"
	if code != 1 || out != want {
		t.Errorf("reload -j: code %d\n%s\nwant\n%s", code, out, want)
	}
}

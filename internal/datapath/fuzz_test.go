package datapath

import (
	"bytes"
	"fmt"
	"testing"
)

// maxFuzzFrame keeps frames in one page, the linear part of an XDP test
// run; larger ones would be split into fragments.
const maxFuzzFrame = 2048

// seedFrames are the frames of all table cases, plus truncations of a few.
func seedFrames(t testing.TB) [][]byte {
	var out [][]byte
	for _, cs := range [][]pktCase{forwardCases(t), guardCases(t), mtuCases(t), malformedCases(t), vlanCases(t)} {
		for _, c := range cs {
			out = append(out, c.frame)
		}
	}
	for _, f := range [][]byte{tcp4(ipDst).bytes(t), icmp6(ip6Dst).bytes(t)} {
		for _, n := range []int{14, 20, 34, 40, 54, len(f) - 1} {
			out = append(out, f[:n])
		}
	}
	// A bad IPv4 header checksum: the program does not verify it (the
	// kernel would drop the packet in ip_rcv); the model checks the error
	// is carried, not repaired.
	bad := tcp4(ipDst).bytes(t)
	bad[14+10] ^= 0x5a
	return append(out, bad)
}

// FuzzXDP feeds arbitrary frames to the XDP program on in0 of the test
// router. Each must be passed unchanged or redirected exactly as the
// reference model (modelXDP) forwards it; never dropped or aborted. The
// model is also held to the other direction: a frame it forwards must not
// be passed, so the model and the program cannot drift apart unnoticed.
// Plain `go test` runs only the seed corpus.
func FuzzXDP(f *testing.F) {
	tn := newTestNet(f)
	for _, fr := range seedFrames(f) {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > maxFuzzFrame {
			return // the kernel refuses these; see minRunLen
		}
		res := runFuzzFrame(t, tn, frame)
		checkModelXDP(t, frame, res)
	})
}

// runFuzzFrame runs frame through the XDP program on in0 of tn.
func runFuzzFrame(t *testing.T, tn *testNet, frame []byte) runResult {
	t.Helper()
	res, err := tn.run(hookXDP, frame, runOpts{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// checkModelXDP holds the XDP program's result for frame to the reference
// model (modelXDP): passed unchanged where the model does not forward,
// redirected exactly as it forwards; any other verdict fails.
func checkModelXDP(t *testing.T, frame []byte, res runResult) {
	t.Helper()
	want := modelXDP(frame)
	switch res.verdict {
	case xdpPass:
		if want != nil {
			t.Fatalf("passed, but the model forwards %s", headers(frame))
		}
		if !bytes.Equal(res.out, frame) {
			t.Fatalf("passed frame modified: %s", diffBytes(res.out, frame))
		}
	case xdpRedirect:
		if want == nil {
			t.Fatalf("redirected, but the model passes %s", headers(frame))
		}
		if err := checkForwarded(frame, res.out, want); err != nil {
			t.Fatalf("%v\n input %s", err, headers(frame))
		}
	default:
		t.Fatalf("verdict %s for %s", hookXDP.verdictName(res.verdict), headers(frame))
	}
}

// headers shows the start of a frame, where the headers are.
func headers(frame []byte) string {
	if len(frame) <= 80 {
		return fmt.Sprintf("%x (%d bytes)", frame, len(frame))
	}
	return fmt.Sprintf("%x... (%d bytes)", frame[:80], len(frame))
}

package nsutil

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"net"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces (run `sudo go test`)")
	}
}

// testNS creates a namespace with a name unique to this test run and deletes
// it when the test ends.
func testNS(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "fp-nsutil-" + hex.EncodeToString(b)
	if err := Create(name); err != nil {
		t.Fatalf("Create(%s): %v", name, err)
	}
	t.Cleanup(func() {
		if err := Delete(name); err != nil {
			t.Errorf("Delete(%s): %v", name, err)
		}
	})
	return name
}

func TestCreateDeleteExists(t *testing.T) {
	requireRoot(t)
	name := testNS(t)
	if !Exists(name) {
		t.Fatalf("Exists(%s) = false after Create", name)
	}
	if err := Create(name); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Create(%s) = %v, want fs.ErrExist", name, err)
	}
	if err := Delete(name); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if Exists(name) {
		t.Fatalf("Exists(%s) = true after Delete", name)
	}
	if err := Delete(name); err != nil {
		t.Fatalf("Delete of a missing namespace: %v", err)
	}
}

// Creating namespaces must leave every thread where it was, the main
// thread included: /proc/self/net and /proc/net show the main thread's
// namespace, and a thread parked in a lab namespace keeps it alive.
func TestCreateLeavesThreadsAlone(t *testing.T) {
	requireRoot(t)
	var want, got unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &want); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		testNS(t)
		if err := unix.Stat("/proc/self/ns/net", &got); err != nil {
			t.Fatal(err)
		}
		if got.Ino != want.Ino {
			t.Fatalf("after Create the main thread is in netns %d, want %d", got.Ino, want.Ino)
		}
	}
}

func TestDoSwitchesAndRestores(t *testing.T) {
	requireRoot(t)
	name := testNS(t)

	before, err := Inode()
	if err != nil {
		t.Fatal(err)
	}
	var inside uint64
	if err := Do(name, func() error {
		var err error
		inside, err = Inode()
		return err
	}); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if inside == before {
		t.Fatalf("inside Do the netns inode is %d, same as the caller's", inside)
	}
	// Do must return the same namespace every time.
	var again uint64
	if err := Do(name, func() error {
		var err error
		again, err = Inode()
		return err
	}); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if again != inside {
		t.Fatalf("second Do saw netns %d, first %d", again, inside)
	}
	after, err := Inode()
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("caller's netns %d after Do, want %d", after, before)
	}
}

func TestDoPropagatesError(t *testing.T) {
	requireRoot(t)
	name := testNS(t)
	want := errors.New("boom")
	if err := Do(name, func() error { return want }); !errors.Is(err, want) {
		t.Fatalf("Do returned %v, want %v", err, want)
	}
	if err := Do("fp-nsutil-missing", func() error { return nil }); err == nil {
		t.Fatal("Do on a missing namespace succeeded")
	}
}

func TestSocketsStayInNamespace(t *testing.T) {
	requireRoot(t)
	name := testNS(t)

	// The socket's own view of its namespace: SO_NETNS_COOKIE.
	var inside *net.UDPConn
	if err := Do(name, func() error {
		var err error
		inside, err = net.ListenUDP("udp", &net.UDPAddr{})
		return err
	}); err != nil {
		t.Fatalf("listen inside: %v", err)
	}
	defer inside.Close()
	host, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	var witness uint64
	if err := Do(name, func() error {
		c, err := net.ListenUDP("udp", &net.UDPAddr{})
		if err != nil {
			return err
		}
		defer c.Close()
		witness = cookie(t, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := cookie(t, inside); got != witness {
		t.Fatalf("socket created in Do has netns cookie %d after Do, want %d", got, witness)
	}
	if got := cookie(t, host); got == witness {
		t.Fatalf("host socket has the namespace's netns cookie %d", got)
	}

	// The abstract unix socket namespace is per netns: a listener created
	// inside Do is reachable from inside, and not from the host, after Do
	// has returned.
	addr := "@fp-nsutil-test-" + name
	var ln net.Listener
	if err := Do(name, func() error {
		var err error
		ln, err = net.Listen("unix", addr)
		return err
	}); err != nil {
		t.Fatalf("listen inside: %v", err)
	}
	defer ln.Close()

	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()

	if c, err := net.Dial("unix", addr); err == nil {
		c.Close()
		t.Fatal("dialled the namespace's abstract socket from the host netns")
	}
	if err := Do(name, func() error {
		c, err := net.Dial("unix", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		t.Fatalf("dial inside: %v", err)
	}
	if err := <-accepted; err != nil {
		t.Fatalf("accept: %v", err)
	}
}

// cookie returns the SO_NETNS_COOKIE of a socket: which namespace it is in.
func cookie(t *testing.T, c *net.UDPConn) uint64 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v uint64
	var serr error
	if err := rc.Control(func(fd uintptr) {
		// x/sys has no uint64 getter, and the kernel wants exactly 8 bytes.
		l := uint32(unsafe.Sizeof(v))
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE,
			uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&l)), 0)
		if errno != 0 {
			serr = errno
		}
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatalf("SO_NETNS_COOKIE: %v", serr)
	}
	return v
}

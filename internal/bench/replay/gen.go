package replay

// Generated with the pinned clang (Debian clang-19) and committed, like the
// datapath's objects. `go generate ./internal/bench/...` reruns this.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type replay_cfg replay ../../../bpf/bench/replay.bpf.c -- -I../../../bpf

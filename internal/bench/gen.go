package bench

// The benchmark's BPF objects are generated with the pinned clang (Debian
// clang-19) and committed, like the datapath's. `go generate ./internal/bench`
// reruns this.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type bench_gen_cfg -type bench_count -type bench_loop_ctl -type bench_tc_hop bench ../../bpf/bench/bench.bpf.c -- -I../../bpf

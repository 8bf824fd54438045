package datapath

// The BPF objects are generated with the pinned clang (Debian clang-19) and
// committed, so building fastpath never needs clang. `make generate` reruns this.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type fp_stats -type fp_iface -type fp_mode -type fp_flow_key -type fp_flow -type fp_state -type fp_lpm4 -type fp_lpm6 -type fp_event -type fp_event_type -type fp_flow_flags -type fp_state_flags fastpath ../../bpf/fastpath.bpf.c -- -I../../bpf

package datapath

// The BPF objects are generated with the pinned clang (Debian clang-19) and
// committed, so building fastpath never needs clang. `make generate` reruns this.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type fp_stats -type fp_iface -type fp_mode -type fp_flow_key -type fp_flow -type fp_state -type fp_lpm4 -type fp_lpm6 -type fp_event -type fp_event_type -type fp_flow_flags -type fp_state_flags -type fp_sweep_args -type fp_forget_args -type fp_del_reason -type fp_guard_cfg -type fp_guard_limit -type fp_guard_src -type fp_guard_top -type fp_guard_hits -type fp_guard_stats -type fp_guard_reason -type fp_guard_flags -type fp_guard_bucket fastpath ../../bpf/fastpath.bpf.c -- -I../../bpf

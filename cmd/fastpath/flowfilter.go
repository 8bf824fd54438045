package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fastpath-router/fastpath/internal/api"
)

// flowFilterFlags are the conntrack -L style filters of 'fastpath flows'.
type flowFilterFlags struct {
	proto, src, dst, sport, dport string
}

func (f *flowFilterFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.proto, "proto", "p", "", "only connections of protocol `PROTO`: tcp or udp")
	fl.StringVarP(&f.src, "src", "s", "", "only connections from `ADDR` (an address or a prefix), original direction")
	fl.StringVarP(&f.dst, "dst", "d", "", "only connections to `ADDR` (an address or a prefix), original direction")
	fl.StringVar(&f.sport, "sport", "", "only connections from source `PORT`, original direction")
	fl.StringVar(&f.dport, "dport", "", "only connections to destination `PORT`, original direction")
	cmd.RegisterFlagCompletionFunc("proto", cobra.FixedCompletions([]string{"tcp", "udp"}, cobra.ShellCompDirectiveNoFileComp))
}

// matcher checks the filters and returns a predicate over flows; nil
// without filters.
func (f *flowFilterFlags) matcher() (func(api.Flow) bool, error) {
	var preds []func(api.Flow) bool
	if f.proto != "" {
		p := strings.ToLower(f.proto)
		switch p {
		case "6":
			p = "tcp"
		case "17":
			p = "udp"
		case "tcp", "udp":
		default:
			return nil, fmt.Errorf("invalid --proto %q: fastpath forwards tcp and udp flows only", f.proto)
		}
		preds = append(preds, func(fl api.Flow) bool { return fl.Proto == p })
	}
	for _, a := range []struct {
		flag, val string
		side      func(api.Tuple) netip.Addr
	}{
		{"--src", f.src, func(t api.Tuple) netip.Addr { return t.Src.Addr() }},
		{"--dst", f.dst, func(t api.Tuple) netip.Addr { return t.Dst.Addr() }},
	} {
		if a.val == "" {
			continue
		}
		pfx, err := parseAddrOrPrefix(a.val)
		if err != nil {
			return nil, fmt.Errorf("invalid %s %q: give an address or a prefix, such as 198.18.1.2 or fd00::/64", a.flag, a.val)
		}
		side := a.side
		preds = append(preds, func(fl api.Flow) bool { return pfx.Contains(side(originalTuple(fl)).Unmap()) })
	}
	for _, p := range []struct {
		flag, val string
		side      func(api.Tuple) uint16
	}{
		{"--sport", f.sport, func(t api.Tuple) uint16 { return t.Src.Port() }},
		{"--dport", f.dport, func(t api.Tuple) uint16 { return t.Dst.Port() }},
	} {
		if p.val == "" {
			continue
		}
		n, err := strconv.ParseUint(p.val, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("invalid %s %q: give a port number, 1 to 65535", p.flag, p.val)
		}
		side, port := p.side, uint16(n)
		preds = append(preds, func(fl api.Flow) bool { return side(originalTuple(fl)) == port })
	}
	if len(preds) == 0 {
		return nil, nil
	}
	return func(fl api.Flow) bool {
		for _, p := range preds {
			if !p(fl) {
				return false
			}
		}
		return true
	}, nil
}

func parseAddrOrPrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked(), nil
}

// originalTuple is the connection's original direction as conntrack names
// it: a reply flow leaves (after NAT is undone) towards the original
// sender, so its Out tuple reversed is the original one.
func originalTuple(fl api.Flow) api.Tuple {
	if fl.Direction == "reply" {
		return api.Tuple{Src: fl.Out.Dst, Dst: fl.Out.Src}
	}
	return fl.In
}

// filterFlows keeps the flows match accepts, the biggest limit of them
// (0: all); Total counts every match.
func filterFlows(fl *api.Flows, match func(api.Flow) bool, limit int) *api.Flows {
	out := &api.Flows{Capacity: fl.Capacity, Flows: []api.Flow{}}
	for _, f := range fl.Flows {
		if match(f) {
			out.Flows = append(out.Flows, f)
		}
	}
	out.Total = len(out.Flows)
	slices.SortStableFunc(out.Flows, compareFlows)
	if limit > 0 && len(out.Flows) > limit {
		out.Flows = out.Flows[:limit]
	}
	return out
}

package ctliberal

import (
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The update must carry only the tuple and the TCP flags: a state or window
// scale attribute would overwrite what the kernel tracks.
func TestLiberalRequest(t *testing.T) {
	for _, tc := range []struct {
		name      string
		src, dst  string
		reply     bool
		wantTuple uint16
		addrLen   int
		family    uint8
	}{
		{"ipv4 original", "198.18.1.1:40000", "198.18.2.1:80", false, ctaTupleOrig, 4, unix.AF_INET},
		{"ipv6 reply", "[fd00:2::1]:80", "[fd00:2::fe]:40000", true, ctaTupleReply, 16, unix.AF_INET6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Request(unix.IPPROTO_TCP, netip.MustParseAddrPort(tc.src), netip.MustParseAddrPort(tc.dst), tc.reply)
			if err != nil {
				t.Fatal(err)
			}
			if m.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8|ipctnlMsgCtNew) {
				t.Errorf("message type %#x", m.Header.Type)
			}
			if m.Header.Flags&netlink.Create != 0 {
				t.Error("NLM_F_CREATE set: the update could create an entry")
			}
			if m.Data[0] != tc.family {
				t.Errorf("nfgenmsg family %d, want %d", m.Data[0], tc.family)
			}
			ad, err := netlink.NewAttributeDecoder(m.Data[4:]) // after struct nfgenmsg
			if err != nil {
				t.Fatal(err)
			}
			var types []uint16
			for ad.Next() {
				types = append(types, ad.Type()&^unix.NLA_F_NESTED)
				switch ad.Type() &^ unix.NLA_F_NESTED {
				case tc.wantTuple:
					ad.Nested(func(nad *netlink.AttributeDecoder) error {
						for nad.Next() {
							if nad.Type()&^unix.NLA_F_NESTED == ctaTupleIP {
								nad.Nested(func(ip *netlink.AttributeDecoder) error {
									for ip.Next() {
										if len(ip.Bytes()) != tc.addrLen {
											t.Errorf("address attribute of %d bytes, want %d", len(ip.Bytes()), tc.addrLen)
										}
									}
									return nil
								})
							}
						}
						return nil
					})
				case ctaProtoInfo:
					ad.Nested(func(nad *netlink.AttributeDecoder) error {
						for nad.Next() {
							nad.Nested(func(tcp *netlink.AttributeDecoder) error {
								n := 0
								for tcp.Next() {
									n++
									typ := tcp.Type()
									if typ != ctaProtoInfoTCPFlagsOrig && typ != ctaProtoInfoTCPFlagsRepl {
										t.Errorf("tcp protoinfo attribute %d: only the flags may be sent", typ)
									}
									if b := tcp.Bytes(); len(b) != 2 || b[0] != tcpFlagBeLiberal || b[1] != tcpFlagBeLiberal|tcpFlagMaxAckSet {
										t.Errorf("flags %x, want {BE_LIBERAL, mask BE_LIBERAL|MAXACK_SET}", b)
									}
								}
								if n != 2 {
									t.Errorf("%d tcp protoinfo attributes, want 2", n)
								}
								return nil
							})
						}
						return nil
					})
				}
			}
			if err := ad.Err(); err != nil {
				t.Fatal(err)
			}
			if len(types) != 2 || types[0] != tc.wantTuple || types[1] != ctaProtoInfo {
				t.Errorf("attributes %v, want [%d %d]", types, tc.wantTuple, ctaProtoInfo)
			}
		})
	}
}

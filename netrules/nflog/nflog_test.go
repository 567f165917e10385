package nflog

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestParsePacketReadsPrefixDestinationAndPort(t *testing.T) {
	ip := make([]byte, 24)
	ip[0] = 0x45 // IPv4, 20-byte header
	ip[9] = 6    // TCP
	copy(ip[12:], []byte{10, 89, 0, 2})
	copy(ip[16:], []byte{198, 51, 100, 12})
	binary.BigEndian.PutUint16(ip[22:], 443)
	msg := append(attr(attrPrefix, []byte("cg-1a2b3c4d\x00")), attr(attrPayload, ip)...)
	p, ok := parsePacket(msg)
	if !ok {
		t.Fatal("not parsed")
	}
	if p.Prefix != "cg-1a2b3c4d" || p.Dst != netip.MustParseAddr("198.51.100.12") || p.Src != netip.MustParseAddr("10.89.0.2") ||
		p.DstPort != 443 || p.ProtoName() != "tcp" {
		t.Fatalf("parsed %+v", p)
	}
}

func TestParsePacketRejectsTruncatedAndNonIPv4(t *testing.T) {
	for name, payload := range map[string][]byte{
		"truncated": {0x45, 0, 0},
		"ipv6":      make([]byte, 40),
	} {
		if name == "ipv6" {
			payload[0] = 0x60
		}
		if _, ok := parsePacket(attr(attrPayload, payload)); ok {
			t.Errorf("%s parsed", name)
		}
	}
	// A malformed attribute length must not panic.
	if _, ok := parsePacket([]byte{0xff, 0xff, 9, 0, 1}); ok {
		t.Error("garbage parsed")
	}
}

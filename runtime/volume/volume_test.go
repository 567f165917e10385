package volume

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestSuperblockUsed(t *testing.T) {
	sb := func(blocks, free uint64, logSize uint32, bit64 bool, magic uint16) []byte {
		b := make([]byte, 2048)
		s := b[1024:]
		le := binary.LittleEndian
		le.PutUint32(s[0x04:], uint32(blocks))
		le.PutUint32(s[0x0C:], uint32(free))
		le.PutUint32(s[0x18:], logSize)
		le.PutUint16(s[0x38:], magic)
		if bit64 {
			le.PutUint32(s[0x60:], 0x80)
			le.PutUint32(s[0x150:], uint32(blocks>>32))
			le.PutUint32(s[0x158:], uint32(free>>32))
		}
		return b
	}
	tests := []struct {
		name    string
		image   []byte
		want    int64
		wantErr bool
	}{
		{"4K blocks", sb(1000, 400, 2, false, 0xEF53), 600 * 4096, false},
		{"1K blocks", sb(1000, 1000, 0, false, 0xEF53), 0, false},
		{"64-bit counts", sb(1<<33, 1<<32, 2, true, 0xEF53), (1 << 32) * 4096, false},
		{"not ext4", sb(1000, 400, 2, false, 0x1234), 0, true},
		{"more free than blocks", sb(10, 400, 2, false, 0xEF53), 0, true},
		{"absurd block size", sb(10, 4, 30, false, 0xEF53), 0, true},
		{"too short", make([]byte, 1500), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := superblockUsed(bytes.NewReader(tt.image))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("superblockUsed = %d, %v; want %d (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

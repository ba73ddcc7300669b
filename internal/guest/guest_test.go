package guest

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestConfigDiskRoundTrip(t *testing.T) {
	cfg := Config{Hostname: "a", Address: "172.16.0.2/24", Gateway: "172.16.0.1", DNS: []string{"172.16.0.1"},
		MAC: "02:fc:ac:10:00:02", AuthorizedKeys: []string{"ssh-ed25519 AAAA x"}, HostKey: "-----BEGIN-----\n", HostKeyPub: "ssh-ed25519 BBBB",
		Hosts: map[string]string{"b.vm": "172.16.0.3"}}
	disk, err := EncodeDisk(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(disk) != ConfigDiskSize {
		t.Fatalf("disk is %d bytes", len(disk))
	}
	got, err := DecodeDisk(bytes.NewReader(disk))
	if err != nil || !reflect.DeepEqual(got, cfg) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if _, err := DecodeDisk(bytes.NewReader(make([]byte, 4096))); !errors.Is(err, ErrNotConfigDisk) {
		t.Fatalf("zero disk: %v", err)
	}
	if _, err := EncodeDisk(Config{Hostname: string(make([]byte, ConfigDiskSize))}); err == nil {
		t.Fatal("oversized config accepted")
	}
}

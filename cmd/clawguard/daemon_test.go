package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoadDaemonConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	def := filepath.Join(dir, "clawguard", "config.yaml") // absent
	tests := []struct {
		name    string
		path    string
		want    daemonConfig
		wantErr string
	}{
		{name: "a missing file at the default path is an empty config", path: def},
		{name: "so is the default path spelled differently", path: filepath.Join(dir, "clawguard") + "/../clawguard/config.yaml"},
		{name: "a missing file elsewhere is an error", path: filepath.Join(dir, "absent.yaml"), wantErr: "no such file"},
		{name: "only comments is an empty config", path: write("comments.yaml", "# nothing set\n")},
		{name: "keys are read", path: write("set.yaml", "bridge: cg1\ndns_upstream: [198.51.100.53]\n"),
			want: daemonConfig{Bridge: "cg1", DNSUpstream: []string{"198.51.100.53"}}},
		{name: "an unknown key names the keys there are", path: write("typo.yaml", "brige: cg1\n"), wantErr: "keys: containerd_address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadDaemonConfig(tt.path, def)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				var ue usageError
				if !errors.As(err, &ue) {
					t.Errorf("a config error must exit 2 (usage), got %T", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The config make install ships is all defaults (everything commented out)
// and documents every key the daemon takes.
func TestShippedConfigDocumentsEveryKeyAndSetsNone(t *testing.T) {
	path := filepath.Join("..", "..", "deploy", "config.yaml")
	got, err := loadDaemonConfig(path, defaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, daemonConfig{}) {
		t.Errorf("the shipped config sets %+v; it must only document the defaults", got)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ty := reflect.TypeOf(daemonConfig{})
	for i := 0; i < ty.NumField(); i++ {
		key := ty.Field(i).Tag.Get("yaml")
		if !strings.Contains(string(b), "#"+key+":") {
			t.Errorf("deploy/config.yaml does not document %q", key)
		}
	}
}

func TestSandboxIDsMustNotShadowAnAccount(t *testing.T) {
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	group := filepath.Join(dir, "group")
	if err := os.WriteFile(passwd, []byte("root:x:0:0::/root:/bin/sh\nbuilder:x:200010:200010::/:/bin/false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(group, []byte("root:x:0:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	subuid := filepath.Join(dir, "subuid")
	// useradd's default: 65536 ids per user from 100000.
	if err := os.WriteFile(subuid, []byte("alice:100000:65536\nbob:165536:65536\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	absent := filepath.Join(dir, "absent")
	if _, err := sandboxIDs("200000-200999", passwd, group, absent, absent); err == nil || !strings.Contains(err.Error(), "user builder (200010)") {
		t.Errorf("a range over an account: %v", err)
	}
	if _, err := sandboxIDs("220000-220999", passwd, group, subuid, absent); err == nil || !strings.Contains(err.Error(), "subuid of bob (165536-231071)") {
		t.Errorf("a range over bob's subordinate ids: %v", err)
	}
	if r, err := sandboxIDs("2100000000-2100000999", passwd, group, subuid, subuid); err != nil || r.First != 2100000000 {
		t.Errorf("a free range: %v %v", r, err)
	}
	if _, err := sandboxIDs("0-10", passwd, group, absent, absent); err == nil {
		t.Error("a range with root's id was accepted")
	}
}

package postgres

import "testing"

func TestSnapshotVisibility(t *testing.T) {
	for _, c := range []struct {
		name string
		snap string
		xids []uint32
		want bool
	}{
		{"below xmin", "100:105:", []uint32{99}, true},
		{"between, not in progress", "100:105:101", []uint32{102}, true},
		{"in progress", "100:105:101,103", []uint32{103}, false},
		{"at xmax", "100:105:", []uint32{105}, false},
		{"later epoch", "4294967396:4294967400:", []uint32{99}, true},
		{"previous epoch's xid", "4294967396:4294967400:", []uint32{4294967000}, true},
		{"any invisible", "100:105:", []uint32{101, 106}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := parseSnapshot(c.snap)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.visibleAll(c.xids); got != c.want {
				t.Fatalf("visible = %v, want %v", got, c.want)
			}
		})
	}
	for _, bad := range []string{"", "1:2", "a:2:", "1:2:x"} {
		if _, err := parseSnapshot(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

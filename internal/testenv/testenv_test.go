package testenv

import "testing"

func TestParseMySQLURL(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    MySQLConn
		wantErr bool
	}{
		{name: "full url", raw: "mysql://u:p%40ss@127.0.0.1:3306/db", want: MySQLConn{Addr: "127.0.0.1:3306", User: "u", Password: "p@ss", Database: "db"}},
		{name: "no database", raw: "mysql://u@h:1", want: MySQLConn{Addr: "h:1", User: "u"}},
		{name: "wrong scheme", raw: "postgres://u@h:1/db", wantErr: true},
		{name: "no host", raw: "mysql:///db", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMySQLURL(tt.raw)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRequired(t *testing.T) {
	t.Setenv("FRESHET_TEST_REQUIRE_SERVICES", "pg, kafka")
	if !Required(Postgres) || !Required(Kafka) || Required(MySQL) {
		t.Fatalf("Required disagrees with %q", "pg, kafka")
	}
}

package integration

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// TestMariaDBBinlogSmoke proves the test MariaDB writes a row-based binlog
// with GTIDs: a change advances the GTID position and the replication user
// sees its row event, with full row metadata, through go-mysql's
// BinlogSyncer.
func TestMariaDBBinlogSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := mustConnectMySQL(t, testenv.MySQLURL(t))
	table := testenv.UniqueName("smoke")
	mustExecMySQL(t, admin, "CREATE TABLE "+table+" (id INT PRIMARY KEY, v VARCHAR(32))")
	t.Cleanup(func() { _, _ = admin.Execute("DROP TABLE " + table) })

	before := gtidBinlogPos(t, admin)
	syncer, streamer := startBinlogSync(t, testenv.MySQLReplURL(t), before)
	defer syncer.Close()

	mustExecMySQL(t, admin, "INSERT INTO "+table+" VALUES (7, 'seven')")
	after := gtidBinlogPos(t, admin)
	if after.String() == before.String() || !after.Contain(before) {
		t.Fatalf("GTID position did not advance: before %q, after %q", before, after)
	}

	var gtid string
	for {
		ev, err := streamer.GetEvent(ctx)
		if err != nil {
			t.Fatalf("binlog event: %v", err)
		}
		switch e := ev.Event.(type) {
		case *replication.MariadbGTIDEvent:
			gtid = e.GTID.String()
		case *replication.RowsEvent:
			if string(e.Table.Table) != table || !isWriteRows(ev.Header.EventType) {
				continue
			}
			if len(e.Rows) != 1 || e.Rows[0][0] != int32(7) || string(asBytes(e.Rows[0][1])) != "seven" {
				t.Fatalf("row event = %v, want [7 seven]", e.Rows)
			}
			if names := e.Table.ColumnNameString(); len(names) != 2 || names[0] != "id" || names[1] != "v" {
				t.Fatalf("table map column names = %v: binlog_row_metadata=FULL not in effect", names)
			}
			if gtid == "" || !after.Contain(mustMariaGTIDSet(t, gtid)) {
				t.Fatalf("row event's GTID %q not within the new position %q", gtid, after)
			}
			return
		}
	}
}

func isWriteRows(t replication.EventType) bool {
	switch t {
	case replication.WRITE_ROWS_EVENTv0, replication.WRITE_ROWS_EVENTv1, replication.WRITE_ROWS_EVENTv2,
		replication.MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1:
		return true
	}
	return false
}

func asBytes(v any) []byte {
	switch x := v.(type) {
	case []byte:
		return x
	case string:
		return []byte(x)
	}
	return nil
}

func mustConnectMySQL(t *testing.T, rawURL string) *client.Conn {
	t.Helper()
	c, err := testenv.ParseMySQLURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := client.Connect(c.Addr, c.User, c.Password, c.Database)
	if err != nil {
		t.Fatalf("mysql connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func mustExecMySQL(t *testing.T, conn *client.Conn, sql string) {
	t.Helper()
	if _, err := conn.Execute(sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func gtidBinlogPos(t *testing.T, conn *client.Conn) *mysql.MariadbGTIDSet {
	t.Helper()
	r, err := conn.Execute("SELECT @@gtid_binlog_pos")
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.GetString(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return mustMariaGTIDSet(t, s)
}

func mustMariaGTIDSet(t *testing.T, s string) *mysql.MariadbGTIDSet {
	t.Helper()
	set, err := mysql.ParseMariadbGTIDSet(s)
	if err != nil {
		t.Fatalf("parse GTID set %q: %v", s, err)
	}
	return set.(*mysql.MariadbGTIDSet)
}

func startBinlogSync(t *testing.T, replURL string, from *mysql.MariadbGTIDSet) (*replication.BinlogSyncer, *replication.BinlogStreamer) {
	t.Helper()
	c, err := testenv.ParseMySQLURL(replURL)
	if err != nil {
		t.Fatal(err)
	}
	host, portStr, _ := net.SplitHostPort(c.Addr)
	port, _ := strconv.Atoi(portStr)
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID: 1000 + rand.Uint32N(1<<30),
		Flavor:   mysql.MariaDBFlavor,
		Host:     host,
		Port:     uint16(port),
		User:     c.User,
		Password: c.Password,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	streamer, err := syncer.StartSyncGTID(from)
	if err != nil {
		syncer.Close()
		t.Fatalf("StartSyncGTID(%s): %v", from, err)
	}
	return syncer, streamer
}

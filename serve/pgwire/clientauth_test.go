package pgwire

import (
	"bufio"
	"errors"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestClientAuthPolicy(t *testing.T) {
	tests := []struct {
		name     string
		tls      bool
		msg      pgproto3.BackendMessage
		want     pgproto3.BackendMessage
		wantCode string
	}{
		{name: "PLUS is never advertised", msg: &pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}},
			want: &pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}},
		{name: "only PLUS is refused", msg: &pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256-PLUS"}}, wantCode: CodeInvalidAuthorization},
		{name: "cleartext without TLS is refused", msg: &pgproto3.AuthenticationCleartextPassword{}, wantCode: CodeInvalidAuthorization},
		{name: "cleartext over TLS is relayed", tls: true, msg: &pgproto3.AuthenticationCleartextPassword{}, want: &pgproto3.AuthenticationCleartextPassword{}},
		{name: "md5 is relayed", msg: &pgproto3.AuthenticationMD5Password{Salt: [4]byte{1}}, want: &pgproto3.AuthenticationMD5Password{Salt: [4]byte{1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newScriptConn(nil, false)
			ca := &clientAuth{conn: c, r: bufio.NewReader(c), tls: tt.tls, max: 1 << 20}
			got, err := ca.policy(tt.msg)
			var fe *Error
			if tt.wantCode != "" {
				if !errors.As(err, &fe) || fe.Code != tt.wantCode {
					t.Fatalf("got %v, want SQLSTATE %s", err, tt.wantCode)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, %v; want %#v", got, err, tt.want)
			}
		})
	}
}

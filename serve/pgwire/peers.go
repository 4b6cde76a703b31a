package pgwire

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// Several front ends behind one TCP load balancer are peers (PgBouncer's
// [peers]): a client's CancelRequest opens a new connection, which may
// reach a peer other than the one holding its session. Each peer puts its
// PeerID in the process id of the BackendKeyData it sends, and a peer
// that receives a CancelRequest for another's key forwards it there.

// MaxPeerID is the largest Config.PeerID: the id takes the top 8 of the
// 31 bits of a process id, leaving 23 random ones.
const MaxPeerID = 255

const peerShift = 23

// codePeerCancel is a CancelRequest forwarded by a peer. It has a code of
// its own so that the peer that receives it only looks it up, and never
// forwards it again: peers whose addresses disagree cannot pass a cancel
// round in a loop.
const codePeerCancel = 1234<<16 | 5900

// peerOf is the PeerID carried in a process id.
func peerOf(pid uint32) int { return int(pid >> peerShift) }

// withPeer puts id into a random positive process id; id 0 leaves it.
func withPeer(pid uint32, id int) uint32 {
	if id == 0 {
		return pid & 0x7fffffff
	}
	return uint32(id)<<peerShift | pid&(1<<peerShift-1)
}

// ValidatePeers checks a Config's PeerID and Peers.
func ValidatePeers(id int, peers map[int]string) error {
	if id < 0 || id > MaxPeerID {
		return fmt.Errorf("peer id %d is not within 1..%d", id, MaxPeerID)
	}
	if len(peers) > 0 && id == 0 {
		return errors.New("peers need this front end's own peer id: peers know one another's keys by it")
	}
	for pid, addr := range peers {
		if pid < 1 || pid > MaxPeerID {
			return fmt.Errorf("peer id %d is not within 1..%d", pid, MaxPeerID)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("peer %d: address %q is not host:port", pid, addr)
		}
	}
	return nil
}

// peerFor returns the address of the peer that issued the key pid, when
// it is another front end of Config.Peers.
func (s *Server) peerFor(pid uint32) (string, bool) {
	id := peerOf(pid)
	if s.cfg.PeerID == 0 || id == s.cfg.PeerID {
		return "", false
	}
	addr, ok := s.cfg.Peers[id]
	return addr, ok
}

// forwardCancel passes a CancelRequest to the peer at addr and, as libpq
// does with PostgreSQL, waits for the peer to close the connection, so
// the client's cancel returns once the cancel was sent to the origin.
func forwardCancel(ctx context.Context, addr string, pid uint32, secret []byte) error {
	ctx, cancel := context.WithTimeout(ctx, cancelTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	msg := make([]byte, 12, 12+len(secret))
	binary.BigEndian.PutUint32(msg[0:], uint32(12+len(secret)))
	binary.BigEndian.PutUint32(msg[4:], codePeerCancel)
	binary.BigEndian.PutUint32(msg[8:], pid)
	if _, err := conn.Write(append(msg, secret...)); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, conn)
	return err
}

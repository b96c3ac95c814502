package analytics

import (
	"context"
	"time"

	"github.com/zenklav/zenklav"
)

// RecordMemberships stores a snapshot of the Klaviyo segments (kind "segment") or lists (kind
// "list") the tenant's requester belonged to at the given time, as the agent sidebar read
// them. An empty names is a snapshot too: in none. The segments report counts each ticket
// under its requester's latest snapshot at or before the ticket's creation; recording the
// same snapshot again changes nothing. Times are kept to the second, and of two different
// snapshots of one customer in the same second either may count as the latest.
func (s *Store) RecordMemberships(ctx context.Context, connection string, requesterID int64, at time.Time, kind string, names []string) error {
	if err := CheckMemberships(connection, requesterID, at, kind); err != nil {
		return err
	}
	if names == nil {
		names = []string{}
	}
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO klaviyo_memberships (tenant, kind, requester_id, at, names)")
	if err != nil {
		return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "prepare insert of memberships")
	}
	defer batch.Abort() //nolint:errcheck // no-op after Send
	if err := batch.Append(connection, kind, requesterID, at.UTC().Truncate(time.Second), names); err != nil {
		return zenklav.Wrap(zenklav.EINVALID, err, "append memberships of requester %d", requesterID)
	}
	if err := batch.Send(); err != nil {
		return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "insert memberships of requester %d", requesterID)
	}
	return nil
}

// CheckMemberships says, as EINVALID, what is wrong with a memberships snapshot's
// connection, requester, time or kind.
func CheckMemberships(connection string, requesterID int64, at time.Time, kind string) error {
	switch {
	case connection == "":
		return zenklav.Errorf(zenklav.EINVALID, "memberships without a tenant")
	case requesterID == 0:
		return zenklav.Errorf(zenklav.EINVALID, "memberships without a requester")
	case kind != "segment" && kind != "list":
		return zenklav.Errorf(zenklav.EINVALID, "memberships kind %q: use segment or list", kind)
	case at.Before(time.Unix(0, 0)):
		return zenklav.Errorf(zenklav.EINVALID, "memberships at %s: before 1970", at)
	}
	return nil
}

package auth

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/zenklav/zenklav"
)

// Report tokens: HS256 JWTs that zenklav signs (`zenklav token`) with the current key of
// ZENKLAV_JWT_SIGNING_KEY, naming it in the header's kid, and verifies with whichever
// listed key the kid names: a new key is put first, and the old one stays listed until the
// tokens it signed expire. Their audience is not the sidebar's, so neither kind of token
// passes as the other.

// Roles a report token may carry.
const (
	RoleMarketer = "marketer" // reads the reports of its tenants
	RoleAdmin    = "admin"    // the same, and may be given every tenant (AllConnections)
)

// AllConnections in a token's tenants gives an admin every connection zenklav has, now and
// later.
const AllConnections = "*"

const (
	reportsAudience = "zenklav:reports"
	// MaxReportTokenTTL is the longest a report token may live: it cannot be revoked except by
	// retiring its key, so it has to end on its own.
	MaxReportTokenTTL = 90 * 24 * time.Hour
)

// Caller is a verified report token: who, in what role, and the connections it may read,
// already narrowed to those zenklav has.
type Caller struct {
	Subject     string
	Role        string
	Connections []string // never empty
	KeyID       string   // the key that signed the token, for logs
	ExpiresAt   time.Time
}

// ReportClaims are what a report token says.
type ReportClaims struct {
	jwt.RegisteredClaims
	Role        string   `json:"role"`
	Connections []string `json:"tenants"`
}

// Reports issues and verifies report tokens.
type Reports struct {
	keys  []SigningKey
	conns *zenklav.Connections // the connections tokens may name, as they stand; nil when unknown (issuing only)
	now   func() time.Time
}

// NewReports returns a Reports that signs with keys[0] and verifies with any of keys
// (ZENKLAV_JWT_SIGNING_KEY). conns are the connections tokens may name; nil makes an
// issuer only, which takes any tenant (`zenklav token` without a connections file) and
// verifies nothing. now is the clock tokens are checked against; nil means time.Now.
func NewReports(keys []SigningKey, conns *zenklav.Connections, now func() time.Time) (*Reports, error) {
	if err := checkKeys(keys, "report tokens"); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Reports{keys: keys, now: now, conns: conns}, nil
}

// TokenRequest is what a report token is issued for.
type TokenRequest struct {
	Subject     string // who the token is for, free text (an email, a name)
	Role        string
	Connections []string // connection ids, or AllConnections for an admin
	TTL         time.Duration
}

// Issue signs a report token. It refuses, as EINVALID, a role, tenant or lifetime that the
// API would not take, so that no token is issued that cannot work.
func (a *Reports) Issue(req TokenRequest) (string, time.Time, error) {
	if err := a.checkRequest(req); err != nil {
		return "", time.Time{}, err
	}
	now := a.now().UTC().Truncate(time.Second) // JWT times are whole seconds
	exp := now.Add(req.TTL)
	signed, err := signZenklavToken(a.keys[0], ReportClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    zenklavIssuer,
			Subject:   req.Subject,
			Audience:  jwt.ClaimStrings{reportsAudience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
		Role:        req.Role,
		Connections: slices.Compact(slices.Sorted(slices.Values(req.Connections))),
	})
	if err != nil {
		return "", time.Time{}, zenklav.Wrap(zenklav.EINTERNAL, err, "sign report token")
	}
	return signed, exp, nil
}

func (a *Reports) checkRequest(req TokenRequest) error {
	switch {
	case strings.TrimSpace(req.Subject) == "":
		return zenklav.Errorf(zenklav.EINVALID, "a report token names who it is for (sub)")
	case req.Role != RoleMarketer && req.Role != RoleAdmin:
		return zenklav.Errorf(zenklav.EINVALID, "role %q: use %s or %s", req.Role, RoleMarketer, RoleAdmin)
	case len(req.Connections) == 0:
		return zenklav.Errorf(zenklav.EINVALID, "a report token names at least one tenant (connection id)")
	case req.TTL <= 0 || req.TTL > MaxReportTokenTTL:
		return zenklav.Errorf(zenklav.EINVALID, "ttl %s: use a positive duration of at most %s (90 days)", req.TTL, MaxReportTokenTTL)
	}
	for _, t := range req.Connections {
		switch {
		case t == AllConnections && req.Role != RoleAdmin:
			return zenklav.Errorf(zenklav.EINVALID, "only an %s may read every tenant (%s)", RoleAdmin, AllConnections)
		case t == AllConnections:
		case a.conns != nil && a.conns.ByID(t) == nil:
			return zenklav.Errorf(zenklav.EINVALID, "tenant %q is not a connection of the connections file (%s)", t, strings.Join(a.conns.IDs(), ", "))
		case strings.TrimSpace(t) == "":
			return zenklav.Errorf(zenklav.EINVALID, "a tenant is empty")
		}
	}
	return nil
}

// Verify checks a report token: HS256 only, signed with the listed key its kid names,
// zenklav's issuer and the reports audience, exp and nbf required and iat not in the
// future. A token that fails any of that is EUNAUTHORIZED; a good one whose role may not
// read reports, or whose tenants are none of zenklav's connections, is EFORBIDDEN.
func (a *Reports) Verify(token string) (Caller, error) {
	claims, kid, err := a.verify(token)
	if err != nil {
		return Caller{}, err
	}
	var connections []string
	for _, t := range claims.Connections {
		switch {
		case t == AllConnections && claims.Role == RoleAdmin:
			connections = append(connections, a.conns.IDs()...)
		case t == AllConnections:
			return Caller{}, zenklav.Errorf(zenklav.EFORBIDDEN, "only an %s may read every tenant", RoleAdmin)
		case a.conns.ByID(t) != nil:
			connections = append(connections, t)
		}
	}
	connections = slices.Compact(slices.Sorted(slices.Values(connections)))
	if len(connections) == 0 {
		return Caller{}, zenklav.Errorf(zenklav.EFORBIDDEN, "this token may read no connection zenklav has")
	}
	return Caller{Subject: claims.Subject, Role: claims.Role, Connections: connections, KeyID: kid, ExpiresAt: claims.ExpiresAt.Time.UTC()}, nil
}

// verify checks a report token's signature, issuer, audience, times and role.
func (a *Reports) verify(token string) (ReportClaims, string, error) {
	if a.conns == nil {
		return ReportClaims{}, "", zenklav.Errorf(zenklav.EINTERNAL, "report tokens are verified against the connections")
	}
	if token == "" {
		return ReportClaims{}, "", zenklav.Errorf(zenklav.EUNAUTHORIZED, "missing report token")
	}
	if len(token) > maxTokenBytes {
		return ReportClaims{}, "", zenklav.Errorf(zenklav.EUNAUTHORIZED, "report token is over %d bytes", maxTokenBytes)
	}
	var claims ReportClaims
	kid, err := parseZenklavToken(token, reportsAudience, a.keys, false, leeway, a.now, &claims)
	if errors.Is(err, errUnknownKey) {
		// A retired key's tokens end here: say so, since the operator's fix is a new token.
		return ReportClaims{}, "", zenklav.Wrap(zenklav.EUNAUTHORIZED, err, "report token is signed with a key zenklav does not have (kid %q): ask for a new token", trimKid(kid))
	}
	if err != nil {
		return ReportClaims{}, "", refusal("report token", err)
	}
	if claims.Role != RoleMarketer && claims.Role != RoleAdmin {
		return ReportClaims{}, "", zenklav.Errorf(zenklav.EFORBIDDEN, "role %q may not read reports", trimKid(claims.Role))
	}
	return claims, kid, nil
}

// VerifyAdmin checks an admin's token as Verify does, but for the operators' pages, which an
// admin uses before zenklav has any connection: the tenants it names need not exist (yet).
func (a *Reports) VerifyAdmin(token string) (Caller, error) {
	claims, kid, err := a.verify(token)
	if err != nil {
		return Caller{}, err
	}
	if claims.Role != RoleAdmin {
		return Caller{}, zenklav.Errorf(zenklav.EFORBIDDEN, "only an %s may use the operators' pages", RoleAdmin)
	}
	return Caller{Subject: claims.Subject, Role: claims.Role, Connections: claims.Connections, KeyID: kid, ExpiresAt: claims.ExpiresAt.Time.UTC()}, nil
}

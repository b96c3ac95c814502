package auth

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/zenklav/zenklav"
)

// Sidebar authentication, in two steps (routes in backend/sidebar.go):
//
//   - POST /app/sidebar (the app's signed URL): Zendesk posts its RS256 JWT as the form
//     field "token". VerifyAppToken checks it against the installation's public key and
//     says whose it is; IssueSession turns that into zenklav's own session token, which the
//     page hands to its scripts.
//   - GET /api/v1/sidebar/… : backend.RequireSession checks the session token
//     (Authorization: Bearer) with VerifySession and puts the Session in the context;
//     handlers query only Session.Connection's data.
//
// Zendesk's token is checked once, where Zendesk sends it; the page's later calls carry a
// session token that zenklav signs, so they need neither Zendesk's key nor its claims.

const (
	// SessionTTL is how long a sidebar session token lives: the page asks for a new one by
	// being loaded again.
	SessionTTL = 15 * time.Minute
	// maxAppTokenAge refuses a Zendesk token issued long ago even if its exp says otherwise:
	// Zendesk signs the URL for the page load at hand, so a sane token is minutes old.
	maxAppTokenAge = time.Hour
	// MaxSessionLife is how long sessions may be renewed after Zendesk's token was verified.
	// zenklav cannot ask Zendesk whether the agent may still use the app, so it asks again
	// (by a reload of the ticket) every two hours: an agent removed from Zendesk, or a
	// leaked session, reads nothing for longer than that.
	MaxSessionLife = 2 * time.Hour
	// RenewGrace is how long after its expiry a session may still be renewed: a laptop
	// that slept through the page's renewal wakes to a working sidebar.
	RenewGrace = 30 * time.Minute

	sessionAudience = "zenklav:sidebar" // so no other token zenklav signs passes as a session
)

// AppIdentity is what a verified Zendesk app token says: which installation (and so which
// connection, the tenant) and, when Zendesk includes them, the agent and the ticket.
type AppIdentity struct {
	Connection   string // the connection's id
	Subdomain    string
	Installation int64
	UserID       int64  // the agent's Zendesk user id; 0 when the token does not carry it
	Email        string // the agent's email; "" when the token does not carry it
	TicketID     int64  // 0 when the token does not carry it
}

// Authorize refuses, with EFORBIDDEN, an identity of another tenant than the one asked for.
func (id AppIdentity) Authorize(connection string) error {
	if id.Connection != connection {
		return zenklav.Errorf(zenklav.EFORBIDDEN, "this token is for another tenant")
	}
	return nil
}

// Session is a verified sidebar session: the identity it was issued for, its id and expiry,
// and when Zendesk's token behind it was verified (renewals keep that time).
type Session struct {
	AppIdentity
	ID        string // the token's jti: one per page load, kept by renewals
	ExpiresAt time.Time
	AuthTime  time.Time
}

// Sidebar verifies Zendesk's app tokens and issues and verifies zenklav's sidebar sessions.
type Sidebar struct {
	conns *zenklav.Connections
	keys  []SigningKey // the first signs; any verifies the tokens whose kid names it
	now   func() time.Time
}

// NewSidebar returns a Sidebar for the app installations of conns, signing sessions
// with keys[0] and verifying them with whichever of keys (ZENKLAV_JWT_SIGNING_KEY) their kid
// names, so that a key rotation logs no agent out. now is the clock tokens are checked
// against; nil means time.Now.
func NewSidebar(conns *zenklav.Connections, keys []SigningKey, now func() time.Time) (*Sidebar, error) {
	if conns == nil {
		return nil, errors.New("sidebar auth needs the connections")
	}
	if err := checkKeys(keys, "sidebar sessions"); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Sidebar{conns: conns, keys: keys, now: now}, nil
}

// installationAudience is the aud of a Zendesk app JWT: the installation's API URL.
var installationAudience = regexp.MustCompile(`^https://([a-z0-9][a-z0-9-]{0,62})\.zendesk\.com/api/v2/apps/installations/([1-9][0-9]{0,17})\.json$`)

// zafClaims are the claims of Zendesk's signed-URL token. Zendesk's published claims are
// iss, aud, exp and iat; the agent and ticket objects are read when present and otherwise
// left empty, never required.
type zafClaims struct {
	jwt.RegisteredClaims
	User *struct {
		ID    looseID `json:"id"`
		Email string  `json:"email"`
	} `json:"user,omitempty"`
	Ticket *struct {
		ID looseID `json:"id"`
	} `json:"ticket,omitempty"`
}

// looseID reads a Zendesk id given as a number or a string of digits; anything else is 0,
// since it only adds to what the signature already vouches for.
type looseID int64

func (l *looseID) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
		*l = looseID(n)
	}
	return nil
}

// VerifyAppToken verifies the JWT Zendesk posts to the app's signed URL and returns whose it
// is. The token names its installation in aud (and its account in iss); that only picks the
// public key and the expected claims from the connections file: the signature must then
// verify with that installation's key, RS256 only, with iss and aud equal to what the
// connection says, exp required, nbf (when present) and iat not in the future, and iat no
// older than an hour. Every refusal is EUNAUTHORIZED.
func (a *Sidebar) VerifyAppToken(token string) (AppIdentity, error) {
	if token == "" {
		return AppIdentity{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "missing Zendesk app token")
	}
	if len(token) > maxTokenBytes {
		return AppIdentity{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "Zendesk app token is over %d bytes", maxTokenBytes)
	}
	var peek jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &peek); err != nil {
		return AppIdentity{}, zenklav.Wrap(zenklav.EUNAUTHORIZED, err, "malformed Zendesk app token")
	}
	var conn *zenklav.Connection
	for _, aud := range peek.Audience {
		m := installationAudience.FindStringSubmatch(aud)
		if m == nil {
			continue
		}
		id, _ := strconv.ParseInt(m[2], 10, 64)
		if conn = a.conns.ByAppInstallation(m[1], id); conn != nil {
			break
		}
	}
	if conn == nil {
		return AppIdentity{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "Zendesk app token is not for an installation zenklav knows")
	}
	app := conn.Zendesk.App
	var claims zafClaims
	_, err := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
		jwt.WithIssuer(conn.Zendesk.Issuer()),
		jwt.WithAudience(conn.Zendesk.AppAudience()),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(a.now),
	).ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		// WithValidMethods already refused any other alg; this keeps the key's type tied to it.
		if _, ok := t.Method.(*jwt.SigningMethodRSA); !ok {
			return nil, errors.New("not an RSA token")
		}
		return app.RSAPublicKey(), nil
	})
	if err != nil {
		return AppIdentity{}, refusal("Zendesk app token", err)
	}
	if claims.IssuedAt == nil {
		return AppIdentity{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "Zendesk app token has no iat")
	}
	if age := a.now().Sub(claims.IssuedAt.Time); age > maxAppTokenAge+leeway {
		return AppIdentity{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "Zendesk app token was issued %s ago", age.Truncate(time.Second))
	}
	id := AppIdentity{Connection: conn.ID, Subdomain: conn.Zendesk.Subdomain, Installation: app.InstallationID}
	if claims.User != nil {
		id.UserID, id.Email = int64(claims.User.ID), claims.User.Email
	}
	if claims.Ticket != nil {
		id.TicketID = int64(claims.Ticket.ID)
	}
	return id, nil
}

// sessionClaims are the claims of zenklav's sidebar session token.
type sessionClaims struct {
	jwt.RegisteredClaims
	Connection   string `json:"tenant"`
	Subdomain    string `json:"subdomain"`
	Installation int64  `json:"installation"`
	UserID       int64  `json:"user_id,omitempty"`
	Email        string `json:"email,omitempty"`
	TicketID     int64  `json:"ticket_id,omitempty"`
	AuthTime     int64  `json:"auth_time"` // OpenID Connect's name for when the user authenticated
}

// IssueSession signs a session token (HS256, SessionTTL) for an identity VerifyAppToken
// verified just now.
func (a *Sidebar) IssueSession(id AppIdentity) (string, Session, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", Session{}, zenklav.Wrap(zenklav.EINTERNAL, err, "session id")
	}
	return a.issue(id, a.now().UTC().Truncate(time.Second), hex.EncodeToString(jti[:]))
}

// RenewSession signs a new token of a valid session, keeping its id (what the session read
// stays tied to it) and its AuthTime: the sidebar page renews its token before it expires,
// for up to MaxSessionLife.
func (a *Sidebar) RenewSession(s Session) (string, Session, error) {
	if a.now().Sub(s.AuthTime) > MaxSessionLife {
		return "", Session{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "session is over %s old: reload the ticket", MaxSessionLife)
	}
	return a.issue(s.AppIdentity, s.AuthTime, s.ID)
}

func (a *Sidebar) issue(id AppIdentity, authTime time.Time, sessionID string) (string, Session, error) {
	if id.Connection == "" || id.Installation == 0 {
		return "", Session{}, zenklav.Errorf(zenklav.EINTERNAL, "session for an unverified identity")
	}
	now := a.now().UTC().Truncate(time.Second) // JWT times are whole seconds
	s := Session{AppIdentity: id, ID: sessionID, ExpiresAt: now.Add(SessionTTL), AuthTime: authTime}
	token, err := signZenklavToken(a.keys[0], sessionClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    zenklavIssuer,
			Audience:  jwt.ClaimStrings{sessionAudience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(s.ExpiresAt),
			ID:        s.ID,
		},
		Connection: id.Connection, Subdomain: id.Subdomain, Installation: id.Installation,
		UserID: id.UserID, Email: id.Email, TicketID: id.TicketID, AuthTime: authTime.Unix(),
	})
	if err != nil {
		return "", Session{}, zenklav.Wrap(zenklav.EINTERNAL, err, "sign session")
	}
	return token, s, nil
}

// VerifySession checks a session token: HS256 with zenklav's key only, zenklav's issuer and
// the sidebar audience, exp and nbf required. A bad token is EUNAUTHORIZED; a good one whose
// installation no longer belongs to its connection (the connections changed) is EFORBIDDEN.
func (a *Sidebar) VerifySession(token string) (Session, error) {
	return a.verifySession(token, leeway)
}

// VerifyRenewable is VerifySession for a renewal: it also takes a session that expired up to
// RenewGrace ago (RenewSession still holds it to MaxSessionLife).
func (a *Sidebar) VerifyRenewable(token string) (Session, error) {
	return a.verifySession(token, RenewGrace)
}

// verifySession is VerifySession with the given leeway on the token's times.
func (a *Sidebar) verifySession(token string, leeway time.Duration) (Session, error) {
	if token == "" {
		return Session{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "missing session token")
	}
	if len(token) > maxTokenBytes {
		return Session{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "session token is over %d bytes", maxTokenBytes)
	}
	var claims sessionClaims
	// A session without a kid was signed before keys had ids, with the current key.
	if _, err := parseZenklavToken(token, sessionAudience, a.keys, true, leeway, a.now, &claims); err != nil {
		return Session{}, refusal("session token", err)
	}
	if claims.Connection == "" || claims.ID == "" || claims.AuthTime == 0 {
		return Session{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "session token lacks its tenant, id or auth_time")
	}
	conn := a.conns.ByAppInstallation(claims.Subdomain, claims.Installation)
	if conn == nil || conn.ID != claims.Connection {
		return Session{}, zenklav.Errorf(zenklav.EFORBIDDEN, "session's app installation no longer belongs to its tenant")
	}
	return Session{
		AppIdentity: AppIdentity{
			Connection: claims.Connection, Subdomain: claims.Subdomain, Installation: claims.Installation,
			UserID: claims.UserID, Email: claims.Email, TicketID: claims.TicketID,
		},
		ID:        claims.ID,
		ExpiresAt: claims.ExpiresAt.Time.UTC(),
		AuthTime:  time.Unix(claims.AuthTime, 0).UTC(),
	}, nil
}

// keep encoding/json's Unmarshaler contract checked at compile time.
var _ json.Unmarshaler = (*looseID)(nil)

package backend

import (
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/auth"
)

const (
	callerKey  = "zenklav.reports.caller"
	sessionKey = "zenklav.sidebar.session"
)

// requireCaller is the middleware of the reports API: it verifies the report token of
// "Authorization: Bearer …" and puts the Caller in the context for callerFrom.
func requireCaller(a TokenVerifier) gin.HandlerFunc {
	return func(c *gin.Context) {
		token := bearerToken(c)
		if token == "" {
			c.Header("WWW-Authenticate", `Bearer realm="zenklav reports"`)
			_ = c.Error(zenklav.Errorf(zenklav.EUNAUTHORIZED, "missing report token: send Authorization: Bearer <token> (zenklav token prints one)"))
			c.Abort()
			return
		}
		caller, err := a.Verify(token)
		if err != nil {
			if zenklav.ErrorCode(err) == zenklav.EUNAUTHORIZED {
				c.Header("WWW-Authenticate", `Bearer realm="zenklav reports", error="invalid_token"`)
			}
			_ = c.Error(err)
			c.Abort()
			return
		}
		c.Set(callerKey, caller)
		c.Next()
	}
}

// callerFrom returns the Caller requireCaller verified for this request.
func callerFrom(c *gin.Context) auth.Caller {
	caller, _ := c.MustGet(callerKey).(auth.Caller)
	return caller
}

// RequireSession is the middleware of the sidebar API: it verifies the session token of
// "Authorization: Bearer …", refuses it when the route names another connection (a :tenant
// parameter), and puts the Session in the context for SessionFrom. With renewable, it takes a
// session that expired up to auth.RenewGrace ago (the renewal route).
func RequireSession(a *auth.Sidebar, renewable bool) gin.HandlerFunc {
	verify := a.VerifySession
	if renewable {
		verify = a.VerifyRenewable
	}
	return func(c *gin.Context) {
		token := bearerToken(c)
		if token == "" {
			_ = c.Error(zenklav.Errorf(zenklav.EUNAUTHORIZED, "missing session token: send Authorization: Bearer <token>"))
			c.Abort()
			return
		}
		s, err := verify(token)
		if err == nil {
			if connection := c.Param("tenant"); connection != "" {
				err = s.Authorize(connection)
			}
		}
		if err != nil {
			_ = c.Error(err)
			c.Abort()
			return
		}
		c.Set(sessionKey, s)
		c.Next()
	}
}

// SessionFrom returns the Session RequireSession verified for this request.
func SessionFrom(c *gin.Context) (auth.Session, bool) {
	v, ok := c.Get(sessionKey)
	if !ok {
		return auth.Session{}, false
	}
	s, ok := v.(auth.Session)
	return s, ok
}

// bearerToken is the token of the request's "Authorization: Bearer …", or "".
func bearerToken(c *gin.Context) string {
	scheme, token, _ := strings.Cut(c.GetHeader("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

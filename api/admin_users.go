package api

import (
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Deactivation keeps the admin's row (and so who created what) but makes
// the password hash unusable: a hash stored with the disabledMark prefix
// never verifies (its scheme is not hashScheme), and every admin request
// refuses an admin whose hash carries it, so their sessions stop at once.
// Reactivation removes the prefix: the old password works again.
const disabledMark = "disabled:"

func adminDisabled(hash string) bool { return strings.HasPrefix(hash, disabledMark) }

type sessionView struct {
	Username  string    `json:"username"`
	Role      Role      `json:"role"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// GET /admin/session: who the bearer token belongs to, with the role and
// the session's expiry (the administration panel shows them).
func (s *Server) adminSession(c *call) (int, any, error) {
	sess, _, err := s.bearerSession(c, kindAdmin)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, sessionView{Username: c.admin.Username, Role: c.admin.Role, ExpiresAt: sess.expiresAt.UTC()}, nil
}

// PATCH /admin/users/{username} {"role"?, "active"?}: changes an admin's
// role, or deactivates (active false) or reactivates (active true) them.
// An admin cannot change their own role or deactivate themselves (409
// CANNOT_CHANGE_SELF): the last Admin could lock everyone out.
func (s *Server) updateAdmin(c *call) (int, any, error) {
	var in struct {
		Role   *string `json:"role"`
		Active *bool   `json:"active"`
	}
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	if in.Role == nil && in.Active == nil {
		return 0, nil, invalid("", "give role, active or both")
	}
	if in.Role != nil && !Role(*in.Role).valid() {
		return 0, nil, invalid("role", "role must be Admin, Manager, Employee or Bureau")
	}
	name := strings.ToLower(c.r.PathValue("username"))
	if name == c.admin.Username {
		return 0, nil, apiErr(http.StatusConflict, "CANNOT_CHANGE_SELF", "an admin cannot change their own role or deactivate themselves")
	}
	tx, err := s.cfg.DB.Begin(c.ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("updating admin: %w", err)
	}
	defer func() { _ = tx.Rollback(c.ctx) }()
	var a adminUser
	var hash string
	err = tx.QueryRow(c.ctx, `SELECT username, role, created_at, created_by, password_hash FROM admins WHERE username = $1`+s.cfg.DB.ForUpdate(),
		name).Scan(&a.Username, &a.Role, &a.CreatedAt, &a.CreatedBy, &hash)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, nil, errAdminNotFound
		}
		return 0, nil, fmt.Errorf("reading admin: %w", err)
	}
	if in.Role != nil {
		a.Role = Role(*in.Role)
	}
	if in.Active != nil {
		switch {
		case !*in.Active && !adminDisabled(hash):
			hash = disabledMark + hash
		case *in.Active && adminDisabled(hash):
			hash = strings.TrimPrefix(hash, disabledMark)
		}
	}
	if _, err := tx.Exec(c.ctx, `UPDATE admins SET role = $2, password_hash = $3 WHERE username = $1`, name, a.Role, hash); err != nil {
		return 0, nil, fmt.Errorf("updating admin: %w", err)
	}
	if err := tx.Commit(c.ctx); err != nil {
		return 0, nil, fmt.Errorf("updating admin: %w", err)
	}
	a.Active = !adminDisabled(hash)
	s.log.InfoContext(c.ctx, "admin updated", "admin", a.Username, "role", a.Role, "active", a.Active, "by", c.admin.Username)
	return http.StatusOK, a, nil
}

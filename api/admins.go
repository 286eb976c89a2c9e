package api

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/antaca/antaca/ledger/pgstore"
)

// Role is an administration panel role. Admin, Manager and Employee are the
// staff roles; Bureau is the card personalisation bureau's machine account,
// which may only use /admin/bureau/... (README.md has the full table).
type Role string

const (
	RoleAdmin    Role = "Admin"
	RoleManager  Role = "Manager"
	RoleEmployee Role = "Employee"
	RoleBureau   Role = "Bureau"
)

func (r Role) valid() bool {
	return r == RoleAdmin || r == RoleManager || r == RoleEmployee || r == RoleBureau
}

type adminUser struct {
	Username  string    `json:"username"`
	Role      Role      `json:"role"`
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy,omitempty"`
	// Active is false for a deactivated admin (admin_users.go).
	Active bool `json:"active"`
}

// usernameRE: usernames are stored lower-case, so logins are case-insensitive.
var usernameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{2,63}$`)

const minPasswordLen = 12

// Password hashes are PBKDF2-HMAC-SHA256 (standard library) with a 16-byte
// random salt, stored as "pbkdf2-sha256$<iterations>$<salt>$<key>" (raw
// base64). The iteration count travels with the hash, so raising
// Config.PasswordIterations only affects new hashes.
const hashScheme = "pbkdf2-sha256"

func hashPassword(password string, iterations int) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hashing password: %w", err)
	}
	key, err := pbkdf2.Key(sha256.New, password, salt, iterations, 32)
	if err != nil {
		return "", fmt.Errorf("hashing password: %w", err)
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("%s$%d$%s$%s", hashScheme, iterations, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

func verifyPassword(encoded, password string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 4 || parts[0] != hashScheme {
		return false
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > 10_000_000 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[2])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iter, len(want))
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}

// bootstrapAdmin creates the configured admin with role Admin when no
// admin of that name exists; an existing one keeps its password and role.
func (s *Server) bootstrapAdmin(ctx context.Context, username, password string) error {
	username = strings.ToLower(strings.TrimSpace(username))
	if !usernameRE.MatchString(username) {
		return fmt.Errorf("api: bootstrap admin username %q is not valid (3-64 of a-z 0-9 . _ @ -)", username)
	}
	if password == "" {
		return errors.New("api: bootstrap admin password is empty")
	}
	var exists bool
	if err := s.cfg.DB.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM admins WHERE username = $1)`, username).Scan(&exists); err != nil {
		return fmt.Errorf("api: reading admins (is migration 0002_admins applied?): %w", err)
	}
	if exists {
		return nil
	}
	hash, err := hashPassword(password, s.cfg.PasswordIterations)
	if err != nil {
		return err
	}
	if _, err := s.cfg.DB.Exec(ctx, `INSERT INTO admins (username, password_hash, role, created_by)
		VALUES ($1, $2, $3, 'bootstrap') ON CONFLICT (username) DO NOTHING`, username, hash, RoleAdmin); err != nil {
		return fmt.Errorf("api: creating bootstrap admin: %w", err)
	}
	s.log.Info("bootstrap admin created", "admin", username)
	return nil
}

// adminByName reads an active admin; errAdminNotFound when there is none
// or they are deactivated.
func (s *Server) adminByName(ctx context.Context, username string) (*adminUser, error) {
	a, _, err := s.adminCredentials(ctx, username)
	if err == nil && !a.Active {
		return nil, errAdminNotFound
	}
	return a, err
}

// adminCredentials reads an admin and its password hash; errAdminNotFound
// when there is none.
func (s *Server) adminCredentials(ctx context.Context, username string) (*adminUser, string, error) {
	var a adminUser
	var hash string
	err := s.cfg.DB.QueryRow(ctx, `SELECT username, role, created_at, created_by, password_hash FROM admins WHERE username = $1`,
		strings.ToLower(username)).Scan(&a.Username, &a.Role, &a.CreatedAt, &a.CreatedBy, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", errAdminNotFound
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading admin: %w", err)
	}
	a.Active = !adminDisabled(hash)
	return &a, hash, nil
}

// POST /admin/users
func (s *Server) createAdmin(c *call) (int, any, error) {
	var in struct {
		Username *string `json:"username"`
		Password *string `json:"password"`
		Role     *string `json:"role"`
	}
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	if in.Username == nil || !usernameRE.MatchString(strings.ToLower(*in.Username)) {
		return 0, nil, invalid("username", "username must be 3-64 of a-z 0-9 . _ @ - (case-insensitive)")
	}
	if in.Password == nil || len(*in.Password) < minPasswordLen || len(*in.Password) > 1024 {
		return 0, nil, invalid("password", fmt.Sprintf("password must be %d to 1024 characters", minPasswordLen))
	}
	if in.Role == nil || !Role(*in.Role).valid() {
		return 0, nil, invalid("role", "role must be Admin, Manager, Employee or Bureau")
	}
	hash, err := hashPassword(*in.Password, s.cfg.PasswordIterations)
	if err != nil {
		return 0, nil, err
	}
	a := adminUser{Username: strings.ToLower(*in.Username), Role: Role(*in.Role), CreatedBy: c.admin.Username, Active: true}
	err = s.cfg.DB.QueryRow(c.ctx, `INSERT INTO admins (username, password_hash, role, created_by) VALUES ($1, $2, $3, $4)
		RETURNING created_at`, a.Username, hash, a.Role, a.CreatedBy).Scan(&a.CreatedAt)
	if pgstore.IsUniqueViolation(err) {
		return 0, nil, apiErr(http.StatusConflict, "ALREADY_EXISTS", "an admin with this username exists")
	}
	if err != nil {
		return 0, nil, fmt.Errorf("creating admin: %w", err)
	}
	s.log.InfoContext(c.ctx, "admin created", "admin", a.Username, "role", a.Role, "by", c.admin.Username)
	return http.StatusCreated, a, nil
}

// GET /admin/users
func (s *Server) listAdmins(c *call) (int, any, error) {
	rows, err := s.cfg.DB.Query(c.ctx, `SELECT username, role, created_at, created_by,
		substr(password_hash, 1, `+strconv.Itoa(len(disabledMark))+`) <> '`+disabledMark+`' FROM admins ORDER BY username`)
	if err != nil {
		return 0, nil, fmt.Errorf("listing admins: %w", err)
	}
	defer rows.Close()
	out := []adminUser{}
	for rows.Next() {
		var a adminUser
		if err := rows.Scan(&a.Username, &a.Role, &a.CreatedAt, &a.CreatedBy, &a.Active); err != nil {
			return 0, nil, fmt.Errorf("listing admins: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("listing admins: %w", err)
	}
	return http.StatusOK, map[string]any{"users": out}, nil
}

// DELETE /admin/users/{username}. The deleted admin's sessions stop
// working at once (every admin request reads the admin's role).
func (s *Server) deleteAdmin(c *call) (int, any, error) {
	name := strings.ToLower(c.r.PathValue("username"))
	if name == c.admin.Username {
		return 0, nil, apiErr(http.StatusConflict, "CANNOT_DELETE_SELF", "an admin cannot delete their own account")
	}
	n, err := s.cfg.DB.Exec(c.ctx, `DELETE FROM admins WHERE username = $1`, name)
	if err != nil {
		return 0, nil, fmt.Errorf("deleting admin: %w", err)
	}
	if n == 0 {
		return 0, nil, errAdminNotFound
	}
	s.log.InfoContext(c.ctx, "admin deleted", "admin", name, "by", c.admin.Username)
	return http.StatusNoContent, nil, nil
}

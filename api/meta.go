package api

import (
	_ "embed"
	"net/http"

	jose "github.com/go-jose/go-jose/v4"
)

//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPI returns the API's OpenAPI 3.0 document (api/openapi.yaml).
func OpenAPI() []byte { return append([]byte(nil), openapiYAML...) }

// GET /openapi.yaml
func (s *Server) openapi(*call) (int, any, error) {
	return http.StatusOK, rawBody{contentType: "application/yaml", data: openapiYAML}, nil
}

// GET /public-key: the server's JWE public key, PKIX PEM.
func (s *Server) publicKey(*call) (int, any, error) {
	return http.StatusOK, rawBody{contentType: "application/x-pem-file", data: s.cfg.Keys.JWEPublicKeyPEM()}, nil
}

// GET /.well-known/jwks.json: the same key as a JWK set.
func (s *Server) jwks(*call) (int, any, error) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key:       &s.cfg.Keys.JWEPrivateKey().PublicKey,
		KeyID:     s.cfg.Keys.JWEKeyID(),
		Algorithm: string(jose.RSA_OAEP_256),
		Use:       "enc",
	}}}
	return http.StatusOK, set, nil
}

package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stackd/stackd/impl/store"
)

// TestAnswerErrorNUL: a NUL byte that the store refused, from whatever
// field, is a 400 (the request's fault), never a 500; its detail does not
// repeat the value. Other errors keep their answers.
func TestAnswerErrorNUL(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
		typ  string
	}{
		{fmt.Errorf("onboard x: store: add repo: %w (argument 5)", store.ErrNUL), http.StatusBadRequest, "/problems/bad-request"},
		{fmt.Errorf("x: %w", store.ErrUnavailable), http.StatusServiceUnavailable, "/problems/unavailable"},
		{fmt.Errorf("x: %w", store.ErrInvalid), http.StatusInternalServerError, "/problems/internal"},
		{errors.New("boom \x00"), http.StatusInternalServerError, "/problems/internal"},
	} {
		rec := httptest.NewRecorder()
		answerError(slog.New(slog.DiscardHandler))(rec, httptest.NewRequest(http.MethodPost, "/api/v1/repos", nil), tc.err)
		var p struct {
			Type   string `json:"type"`
			Detail string `json:"detail"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatalf("%v: %v %q", tc.err, err, rec.Body)
		}
		if rec.Code != tc.want || p.Type != tc.typ || strings.ContainsRune(p.Detail, 0) {
			t.Errorf("%v: %d %+v, want %d %s", tc.err, rec.Code, p, tc.want, tc.typ)
		}
	}
}

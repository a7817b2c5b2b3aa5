package httpbody

import (
	"bytes"
	"compress/gzip"
	"net/http/httptest"
	"strings"
	"testing"
)

func gz(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	_, _ = w.Write(b)
	_ = w.Close()
	return out.Bytes()
}

func TestRead(t *testing.T) {
	big := bytes.Repeat([]byte("a"), 10_000)
	cases := []struct {
		name   string
		body   []byte
		enc    string
		status int // 0: success
		want   string
	}{
		{"plain", []byte("[1]"), "", 0, "[1]"},
		{"gzip", gz([]byte("[2]")), "gzip", 0, "[2]"},
		{"too large as sent", big, "", 413, ""},
		{"gzip bomb", gz(big), "gzip", 413, ""},
		{"corrupt gzip", []byte("not gzip"), "gzip", 400, ""},
		{"unknown encoding", []byte("x"), "br", 415, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/", bytes.NewReader(c.body))
			if c.enc != "" {
				req.Header.Set("Content-Encoding", c.enc)
			}
			got, err := Read(req, &bytes.Buffer{}, 1000, 2000)
			if c.status == 0 {
				if err != nil || string(got) != c.want {
					t.Fatalf("got %q, %v; want %q", got, err, c.want)
				}
				return
			}
			if err == nil || StatusOf(err) != c.status {
				t.Fatalf("got err %v (status %d), want status %d", err, StatusOf(err), c.status)
			}
		})
	}
}

func TestCheckJSONDepth(t *testing.T) {
	if err := CheckJSONDepth([]byte(strings.Repeat("[", 33)), 32); err == nil {
		t.Error("33 levels accepted with a limit of 32")
	}
	if err := CheckJSONDepth([]byte(`["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"["]`), 2); err != nil {
		t.Errorf("brackets inside a string counted: %v", err)
	}
}

func FuzzGunzip(f *testing.F) {
	f.Add(gz([]byte(`[{"traceId":"1"}]`)))
	f.Add([]byte{0x1f, 0x8b, 0x08})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := Gunzip(b, 4096)
		if err == nil && len(out) > 4096 {
			t.Fatalf("inflated %d bytes past the 4096 cap", len(out))
		}
		if err != nil && StatusOf(err) != 400 && StatusOf(err) != 413 {
			t.Fatalf("status %d", StatusOf(err))
		}
	})
}

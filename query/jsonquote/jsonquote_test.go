package jsonquote

import (
	"bytes"
	"encoding/json"
	"testing"
)

func FuzzAppendMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{"", "plain", "<a href=\"x\">&</a>", "\b\f\n\r\t\x00\x1f\x7f", "\xff\xc3\x28", "\u2028\u2029😀é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(s); err != nil {
			t.Fatal(err)
		}
		got := append(Append(nil, s, EncodingJSON), '\n')
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("Append(%q) = %s, encoding/json %s", s, got, want.Bytes())
		}
		// Without HTML escapes it is still a JSON string of s.
		var back string
		if err := json.Unmarshal(Append(nil, s, Style{}), &back); err != nil {
			t.Fatalf("Append(%q, Style{}) is not JSON: %v", s, err)
		}
		var want2 string
		_ = json.Unmarshal(want.Bytes(), &want2)
		if back != want2 {
			t.Fatalf("Append(%q, Style{}) reads back as %q, encoding/json's as %q", s, back, want2)
		}
	})
}

func TestStyles(t *testing.T) {
	for _, tc := range []struct {
		s     string
		style Style
		want  string
	}{
		{"<&>", Style{}, `"<&>"`},
		{"<&>", EncodingJSON, `"\u003c\u0026\u003e"`},
		{"\b\f", Style{}, `"\u0008\u000c"`},
		{"\b\f", EncodingJSON, `"\b\f"`},
	} {
		if got := string(Append(nil, tc.s, tc.style)); got != tc.want {
			t.Errorf("Append(%q, %+v) = %s, want %s", tc.s, tc.style, got, tc.want)
		}
	}
}

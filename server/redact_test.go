package server

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/storage/remotewrite"
)

func TestStatusConfigRedactsCredentials(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Storage.RemoteWrite.Targets = []remotewrite.Target{{
		URL:     "https://writer:hunter2-secret@mimir.example/api/v1/push",
		Headers: map[string]string{"Authorization": "Bearer sekret-token", "X-Scope-OrgID": "mesh"},
	}}
	out, _ := yaml.Marshal(redacted(cfg))
	for _, secret := range []string{"hunter2-secret", "sekret-token"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("/api/v1/status/config shows %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(string(out), "writer@mimir.example") || !strings.Contains(string(out), "X-Scope-OrgID") {
		t.Errorf("redaction removed more than the credentials:\n%s", out)
	}
	if cfg.Storage.RemoteWrite.Targets[0].Headers["Authorization"] != "Bearer sekret-token" {
		t.Error("redacted changed the running configuration")
	}
}

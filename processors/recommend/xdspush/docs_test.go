package xdspush

import (
	"os"
	"strings"
	"testing"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	// The typed configs the documented snippets name must resolve.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
)

// yamlBlocks returns the ```yaml blocks of the document that contain want.
func yamlBlocks(t *testing.T, doc, want string) []string {
	t.Helper()
	var out []string
	for _, part := range strings.Split(doc, "```yaml\n")[1:] {
		block, _, _ := strings.Cut(part, "```")
		if strings.Contains(block, want) {
			out = append(out, block)
		}
	}
	return out
}

// checkFilter decodes one HTTP filter as Envoy would and validates it; it
// must subscribe to the shared resource with a pass-through default.
func checkFilter(t *testing.T, v any) {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	var f hcmv3.HttpFilter
	if err := protojson.Unmarshal(j, &f); err != nil {
		t.Fatalf("filter does not decode: %v\n%s", err, j)
	}
	if err := f.ValidateAll(); err != nil {
		t.Fatalf("filter invalid: %v", err)
	}
	cd := f.GetConfigDiscovery()
	if f.GetName() != SharedResourceName || cd == nil || cd.GetDefaultConfig() == nil || !cd.GetApplyDefaultConfigWithoutWarming() ||
		len(cd.GetTypeUrls()) != 1 || cd.GetTypeUrls()[0] != localRateLimitTypeURL {
		t.Fatalf("filter %v", &f)
	}
}

// TestDocumentedEnvoyConfigIsValid decodes the Envoy and Istio snippets of
// docs/recommendations.md into Envoy's types, so the documentation cannot
// drift into configuration Envoy rejects.
func TestDocumentedEnvoyConfigIsValid(t *testing.T) {
	data, err := os.ReadFile("../../../docs/recommendations.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)

	envoy := yamlBlocks(t, doc, "http_filters:\n- name: meshlens/local_ratelimit")
	if len(envoy) != 1 {
		t.Fatalf("%d Envoy http_filters snippets, want 1", len(envoy))
	}
	var hcm struct {
		HTTPFilters []map[string]any `json:"http_filters"`
	}
	if err := yaml.Unmarshal([]byte(envoy[0]), &hcm); err != nil {
		t.Fatal(err)
	}
	checkFilter(t, hcm.HTTPFilters[0])

	istio := yamlBlocks(t, doc, "kind: EnvoyFilter\nmetadata: {name: meshlens-local-ratelimit")
	if len(istio) != 1 {
		t.Fatalf("%d Istio EnvoyFilter snippets, want 1", len(istio))
	}
	var ef struct {
		Spec struct {
			ConfigPatches []struct {
				ApplyTo string `json:"applyTo"`
				Patch   struct {
					Operation string         `json:"operation"`
					Value     map[string]any `json:"value"`
				} `json:"patch"`
			} `json:"configPatches"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal([]byte(istio[0]), &ef); err != nil {
		t.Fatal(err)
	}
	if len(ef.Spec.ConfigPatches) != 1 || ef.Spec.ConfigPatches[0].ApplyTo != "HTTP_FILTER" {
		t.Fatalf("EnvoyFilter patches %+v", ef.Spec.ConfigPatches)
	}
	checkFilter(t, ef.Spec.ConfigPatches[0].Patch.Value)
}

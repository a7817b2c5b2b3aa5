package recommend

import (
	"context"
	"os"
	"testing"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	"istio.io/client-go/pkg/clientset/versioned/fake"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

func TestLoadIstioClusterMatchesDir(t *testing.T) {
	b, err := os.ReadFile("testdata/istio/reviews.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var objs []runtime.Object
	for _, doc := range splitYAML(b) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		var o runtime.Object
		switch meta.Kind {
		case "VirtualService":
			o = &networkingv1.VirtualService{}
		case "DestinationRule":
			o = &networkingv1.DestinationRule{}
		case "EnvoyFilter":
			o = &networkingv1alpha3.EnvoyFilter{}
		}
		if err := yaml.Unmarshal(doc, o); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	got, err := LoadIstioCluster(context.Background(), fake.NewSimpleClientset(objs...))
	if err != nil {
		t.Fatal(err)
	}
	want, err := LoadIstioDir("testdata/istio")
	if err != nil {
		t.Fatal(err)
	}
	for k, w := range want.Routes {
		g := got.Routes[k]
		if g == nil || g.Timeout != w.Timeout || g.Retries != w.Retries || g.PerTryTimeout != w.PerTryTimeout || g.RetryOn != w.RetryOn {
			t.Fatalf("route %s: cluster %+v, dir %+v", k, g, w)
		}
	}
	if g, w := got.Policies["reviews.default"], want.Policies["reviews.default"]; g == nil || g.RetryBudgetPercent != w.RetryBudgetPercent {
		t.Fatalf("policy: cluster %+v, dir %+v", g, w)
	}
	if g := got.Limits["productpage.default"]; g == nil || g.RatePerSecond != 100 {
		t.Fatalf("limit: %+v", g)
	}
}

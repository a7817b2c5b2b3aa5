package recommend

import (
	"context"
	"errors"
	"fmt"

	"istio.io/client-go/pkg/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxClusterObjects bounds how many resources of each kind are read from
// the cluster.
const maxClusterObjects = 20000

// LoadIstioCluster reads the VirtualServices, DestinationRules and
// EnvoyFilters of every namespace through the Kubernetes API, in pages of
// 500. Resources that cannot be interpreted are reported in the joined
// error; the rest are kept.
func LoadIstioCluster(ctx context.Context, c versioned.Interface) (*CurrentConfig, error) {
	cfg := NewCurrentConfig()
	var errs []error
	opts := metav1.ListOptions{Limit: 500}
	for n := 0; n < maxClusterObjects; {
		l, err := c.NetworkingV1().VirtualServices(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list VirtualServices: %w", err)
		}
		for _, vs := range l.Items {
			cfg.addVS(vs, "kubernetes")
		}
		n += len(l.Items)
		if opts.Continue = l.Continue; opts.Continue == "" {
			break
		}
	}
	opts.Continue = ""
	for n := 0; n < maxClusterObjects; {
		l, err := c.NetworkingV1().DestinationRules(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list DestinationRules: %w", err)
		}
		for _, dr := range l.Items {
			cfg.addDR(dr, "kubernetes")
		}
		n += len(l.Items)
		if opts.Continue = l.Continue; opts.Continue == "" {
			break
		}
	}
	opts.Continue = ""
	for n := 0; n < maxClusterObjects; {
		l, err := c.NetworkingV1alpha3().EnvoyFilters(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list EnvoyFilters: %w", err)
		}
		for _, ef := range l.Items {
			if err := cfg.addEF(ef, "kubernetes"); err != nil {
				errs = append(errs, fmt.Errorf("EnvoyFilter %s/%s: %w", ef.Namespace, ef.Name, err))
			}
		}
		n += len(l.Items)
		if opts.Continue = l.Continue; opts.Continue == "" {
			break
		}
	}
	cfg.Loaded = true
	return cfg, errors.Join(errs...)
}

# Regenerates committed protobuf Go code. Included by the top-level Makefile.
# Needs protoc (Debian: protobuf-compiler); the Go plugins are installed into
# a scratch GOBIN so the repository and go.mod stay untouched.

PROTO_GOBIN ?= /tmp/meshlens-protoc-bin
PROTOC_GEN_GO_VERSION ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.2
MESHREPORT_PROTO_DIR := receivers/meshreport/proto

.PHONY: proto proto-tools

proto-tools:
	@command -v protoc >/dev/null || (apt-get update && apt-get install -y protobuf-compiler)
	GOBIN=$(PROTO_GOBIN) GOFLAGS=-mod=mod go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(PROTO_GOBIN) GOFLAGS=-mod=mod go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

proto: proto-tools
	# -I . registers the files under their repository paths, which no
	# other package's protos can collide with in the global registry.
	PATH=$(PROTO_GOBIN):$$PATH protoc -I . \
		--go_out=. --go_opt=module=github.com/meshlens/meshlens \
		--go-grpc_out=. --go-grpc_opt=module=github.com/meshlens/meshlens \
		$(MESHREPORT_PROTO_DIR)/common.proto $(MESHREPORT_PROTO_DIR)/service-mesh.proto

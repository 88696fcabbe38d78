# The two commands a newcomer needs (see README.md). Both need root.
.PHONY: demo test build

demo:
	bash scripts/demo.sh

test:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	go vet ./...
	go test -count=1 -timeout 20m ./...

build:
	go build -o rtcr ./cmd/rtcr

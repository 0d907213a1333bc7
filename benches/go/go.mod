// P6: the P4 cycle through the Go binding (issue 8). Its own module, so that the binding's
// module stays free of benchmark code; it links the binding from this repository.
module github.com/batchdb/batchdb/benches/go

go 1.24

require github.com/batchdb/batchdb/bindings/go v0.0.0

replace github.com/batchdb/batchdb/bindings/go => ../../bindings/go

module github.com/batchdb/batchdb/bindings/go

go 1.24

module github.com/cairn-data/cairn

go 1.26

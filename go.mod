module github.com/cairn-data/cairn

go 1.26

require github.com/tidwall/btree v1.8.2

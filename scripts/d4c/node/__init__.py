"""`d4c node`: the volunteer's program that keeps rare and at-risk copies (docs/nodes.md).

`policy` is the pure ranking (also used by `simulate`); `config` the node's settings,
`inventory` the catalog as candidates, `store` the data folder, `transfer` the verified
HTTP download, `torrent` BitTorrent through aria2c, `checkins` the node's public
record, `sync` one run.
"""

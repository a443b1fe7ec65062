"""The network: config, blocks, blend (ABM / R-ABM), LRL, BPL and ABPN composed from them."""
